"""The plain-torch sparse convolutions against dense / loop references."""

from __future__ import annotations

import pytest
import torch

from liftgs.modules.sparse_unet import VoxelDownsample, VoxelUpsample
from liftgs.modules.sparse_conv import OFFSETS_3, SubMConv3d, build_rulebook


def random_voxels(n: int, extent: int, batches: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    b = torch.randint(0, batches, (n, 1), generator=g)
    xyz = torch.randint(0, extent, (n, 3), generator=g)
    return torch.unique(torch.cat([b, xyz], 1), dim=0)  # [V, 4]


def dense_submanifold(features, coords, weight, extent, batches):
    """Reference: dense conv3d (cross-correlation) read back at the active voxels."""
    V, C = features.shape
    dense = features.new_zeros(batches, C, extent, extent, extent)
    b, x, y, z = coords.T
    dense[b, :, x, y, z] = features
    w = weight.view(3, 3, 3, weight.shape[1], weight.shape[2]).permute(4, 3, 0, 1, 2)
    out = torch.nn.functional.conv3d(dense, w, padding=1)
    return out[b, :, x, y, z]


@pytest.mark.parametrize("n,extent,seed", [(300, 8, 0), (900, 10, 1), (2000, 30, 2)])
def test_submanifold_conv_matches_dense_conv3d_values_and_gradients(n, extent, seed):
    coords = random_voxels(n, extent, seed=seed)
    torch.manual_seed(seed)
    conv = SubMConv3d(3, 4).double()
    feats = torch.randn(len(coords), 3, dtype=torch.float64, requires_grad=True)
    out = conv(feats, build_rulebook(coords))
    w_ref = conv.weight.detach().clone().requires_grad_()
    f_ref = feats.detach().clone().requires_grad_()
    ref = dense_submanifold(f_ref, coords, w_ref, extent, 2)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(feats.grad, f_ref.grad)
    torch.testing.assert_close(conv.weight.grad, w_ref.grad)


def test_backward_gives_the_same_gradients_with_or_without_the_kept_gathers(monkeypatch):
    """Large layers gather the input rows again in backward instead of keeping them."""
    import liftgs.modules.sparse_conv as sc

    coords = random_voxels(900, 10, seed=5)
    torch.manual_seed(5)
    conv = SubMConv3d(16, 8)
    rb = build_rulebook(coords)
    feats = torch.randn(len(coords), 16)
    grads = []
    for limit in (sc.SAVE_GATHERED_MAX, 0):
        monkeypatch.setattr(sc, "SAVE_GATHERED_MAX", limit)
        f = feats.clone().requires_grad_()
        conv.weight.grad = None
        (conv(f, rb) * torch.arange(8.0)).sum().backward()
        grads.append((f.grad, conv.weight.grad.clone()))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])


def test_rulebook_pairs_are_exact_neighbours():
    coords = random_voxels(200, 6, seed=3)
    rb = build_rulebook(coords)
    lookup = {tuple(c): i for i, c in enumerate(coords.tolist())}
    for k, (s, e) in enumerate(rb.bounds):
        d = OFFSETS_3[k].tolist()
        expect = sorted((lookup[(c[0], c[1] + d[0], c[2] + d[1], c[3] + d[2])], i) for i, c in enumerate(coords.tolist())
                        if (c[0], c[1] + d[0], c[2] + d[1], c[3] + d[2]) in lookup)
        got = sorted(zip(rb.src[s:e].tolist(), rb.dst[s:e].tolist()))
        assert got == expect


def test_down_and_up_sampling_match_loop_reference():
    coords = random_voxels(400, 9, seed=4)
    torch.manual_seed(0)
    down, up = VoxelDownsample(3, 5).double(), VoxelUpsample(5, 2).double()
    feats = torch.randn(len(coords), 3, dtype=torch.float64)
    out, parents, inverse, child = down(feats, coords, 2)
    ref = {}
    for f, c in zip(feats, coords.tolist()):
        key = (c[0], c[1] // 2, c[2] // 2, c[3] // 2)
        slot = (c[1] % 2) * 4 + (c[2] % 2) * 2 + (c[3] % 2)
        ref[key] = ref.get(key, 0) + f @ down.weight[slot].detach()
    assert len(ref) == len(parents)
    for p, row in zip(parents.tolist(), out):
        torch.testing.assert_close(row.detach(), ref[tuple(p)])
    back = up(out, inverse, child)
    for i, c in enumerate(coords.tolist()):
        slot = (c[1] % 2) * 4 + (c[2] % 2) * 2 + (c[3] % 2)
        torch.testing.assert_close(back[i].detach(), out[inverse[i]].detach() @ up.weight[slot].detach())


def test_rulebook_dense_table_equals_binary_search():
    coords = random_voxels(500, 12, batches=3, seed=6)
    dense, searched = build_rulebook(coords), build_rulebook(coords, max_dense_cells=0)
    assert dense.bounds == searched.bounds
    assert torch.equal(dense.src, searched.src) and torch.equal(dense.dst, searched.dst)


def test_rulebook_csr_patterns_group_pairs_by_voxel():
    from liftgs.modules.sparse_conv import _csr_pattern

    rb = build_rulebook(random_voxels(400, 9, seed=7))
    for pattern, rows in ((rb.dst_csr, rb.dst), (rb.src_csr, rb.src)):
        crow, col = _csr_pattern(rows, rb.num_voxels)
        assert torch.equal(pattern[0], crow)
        for r in range(0, rb.num_voxels, 7):  # same pairs per row, in pair order
            a, b = int(crow[r]), int(crow[r + 1])
            assert torch.equal(pattern[1][a:b], col[a:b])


def test_compiled_rulebook_equals_torch_reference():
    from liftgs.modules.sparse_conv import _rulebook_from_neighbours, _rulebook_from_neighbours_compiled

    for seed, batches in ((8, 1), (9, 3)):
        coords = random_voxels(600, 10, batches=batches, seed=seed)
        rb = build_rulebook(coords)  # CPU: the compiled path
        xyz = coords[:, 1:].long() + 1
        # rebuild the neighbour table by brute force and run the torch reference on it
        key = {(int(b), *map(int, p)): i for i, (b, p) in enumerate(zip(coords[:, 0], xyz))}
        table = torch.tensor([[key.get((int(b), int(p[0] + d[0]), int(p[1] + d[1]), int(p[2] + d[2])), -1)
                               for b, p in zip(coords[:, 0], xyz)] for d in OFFSETS_3.tolist()])
        ref = _rulebook_from_neighbours(table)
        fast = _rulebook_from_neighbours_compiled(table)
        for a in (rb, fast):
            assert a.bounds == ref.bounds and a.num_voxels == ref.num_voxels
            for x, y in ((a.src, ref.src), (a.dst, ref.dst), *zip(a.dst_csr, ref.dst_csr), *zip(a.src_csr, ref.src_csr)):
                assert torch.equal(x, y)


def test_im2col_route_equals_pair_route_values_and_weight_gradient():
    from liftgs.modules.sparse_conv import _SubmanifoldConv

    coords = random_voxels(700, 9, batches=2, seed=11)
    rb = build_rulebook(coords)
    torch.manual_seed(0)
    conv = SubMConv3d(6, 5).double()
    feats = torch.randn(len(coords), 6, dtype=torch.float64)  # no gradient: the im2col route
    out = conv(feats, rb)
    w = conv.weight.detach().clone().requires_grad_()
    ref = _SubmanifoldConv.apply(feats, w, rb.src, rb.dst, rb.bounds, rb.num_voxels, rb.dst_csr, rb.src_csr)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(conv.weight.grad, w.grad)
    dense = dense_submanifold(feats, coords, conv.weight.detach(), 9, 2)
    torch.testing.assert_close(out.detach(), dense)
