"""liftgs.model"""
