"""liftgs.eval"""
