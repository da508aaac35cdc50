"""liftgs.synth"""
