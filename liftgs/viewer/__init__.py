"""``liftgs view``: a scene in the browser (viser) -- its points, camera frustums with their
images, the pseudo-labels of a chosen frame, a model's predicted Gaussians, and phrases
grounded with one of several models, highlighted in the cloud with their boxes and scores.

    from liftgs.viewer import ViewConfig, launch_viewer
    viewer = launch_viewer(ViewConfig(scene=Path("data/room0"), checkpoint=(Path("runs/ft"),)))
    print(viewer.url)       # http://127.0.0.1:8080
    viewer.ground("the red chair")
    viewer.stop()

The server listens on 127.0.0.1 unless told otherwise (docs/viewer.md). viser is an optional
dependency (``pip install 'liftgs[view]'``); it is imported when a viewer starts.
"""

from liftgs.viewer.app import ModelChoice, Viewer, ViewConfig, ViewInputs, launch_viewer, load_inputs

__all__ = ["ModelChoice", "Viewer", "ViewConfig", "ViewInputs", "launch_viewer", "load_inputs"]
