"""liftgs.modules: building blocks shared by the model families.

| module | what |
| --- | --- |
| ``voxelize`` | points -> voxels of a batch (flat tensor + offsets), scatter means |
| ``sparse_conv`` / ``rulebook_kernel`` | submanifold / strided sparse 3D convolution on CPU and GPU |
| ``sparse_unet`` | the sparse-conv UNet point encoder |
| ``decoder`` | query/point cross-attention decoder layers (MaskFormer style) |
| ``position`` | Fourier features of 3D positions |
| ``gaussian_head`` | per-point MLP -> 3D Gaussians (with low-rank features) |
| ``components`` | connected-component clean-up of predicted point masks |
| ``fps_kernel`` | compiled farthest-point sampling (CPU) |
"""
