"""liftgs.text"""
