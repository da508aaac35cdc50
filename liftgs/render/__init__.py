"""liftgs.render"""
