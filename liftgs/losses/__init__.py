"""liftgs.losses"""
