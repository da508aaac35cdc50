"""liftgs.train"""
