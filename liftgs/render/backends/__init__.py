"""Renderer backends, each named by what it runs on; :func:`liftgs.render.render_weights`
and :func:`liftgs.render.render` pick one (``backend=``).

| module | what | where |
| --- | --- | --- |
| ``numba`` | compiled pair-list (CSR) kernels, the CPU default | CPU |
| ``torch`` | vectorised dense pixel x Gaussian blocks per tile, any device | CPU, CUDA |
| ``reference`` | the dense [P, N] weight matrix, the slow obvious reference for tests | any |
| ``gsplat`` | gsplat's CUDA rasteriser (images only, no reusable weights) | CUDA |

A new backend is a module here that returns a :class:`liftgs.render.RenderWeights` (or a
whole image, like gsplat) and one branch in :mod:`liftgs.render.api`.
"""
