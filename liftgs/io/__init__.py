"""liftgs.io"""
