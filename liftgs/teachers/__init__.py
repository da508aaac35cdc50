"""liftgs.teachers"""
