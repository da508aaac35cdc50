"""The numba CPU backend: per-tile pair lists (CSR) built and composited by compiled kernels.

``csr`` holds the weights' layout, the autograd functions and the kernel launches;
``kernels`` the projection-to-pairs walk, ``composite_kernels`` the compositing products.
numba is imported on first use only.
"""
