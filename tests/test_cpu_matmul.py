"""The CPU score GEMM through numpy's OpenBLAS (chatir_env.cpu_matmul)."""

import pytest
import torch

from chatir_env import cpu_matmul
from chatir_env.metrics import target_ranks

needs_openblas = pytest.mark.skipif(
    cpu_matmul._openblas_controller() is None,
    reason="numpy is not linked against OpenBLAS here (or threadpoolctl is missing): torch.mm is used instead",
)


def _operands(m=300, k=256, n=4_000, seed=0, integer=False):
    gen = torch.Generator().manual_seed(seed)
    if integer:  # small integers: every product and sum is exact in float32, whatever the kernel
        return (torch.randint(-3, 4, (m, k), generator=gen).float(), torch.randint(-3, 4, (k, n), generator=gen).float())
    return torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)


@needs_openblas
def test_large_float_products_go_through_openblas_and_match_torch():
    a, b = _operands()
    assert cpu_matmul.uses_openblas(a, b)
    torch.testing.assert_close(cpu_matmul.matmul(a, b), a @ b, rtol=1e-5, atol=1e-4)
    a, b = _operands(integer=True)
    assert torch.equal(cpu_matmul.matmul(a, b), a @ b)
    a64, b64 = a.double(), b.T.contiguous().double().T  # a transposed (column-major) right operand too
    assert torch.equal(cpu_matmul.matmul(a64, b64), a64 @ b64)


@needs_openblas
def test_result_does_not_depend_on_the_number_of_threads():
    a, b = _operands(m=301, seed=1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cpu_matmul.matmul(a, b)
        torch.set_num_threads(3)  # three uneven row slices
        three = cpu_matmul.matmul(a, b)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, three)


@needs_openblas
def test_openblas_thread_count_is_restored_after_the_call():
    before = [lib["num_threads"] for lib in cpu_matmul._openblas_controller().info()]
    cpu_matmul.matmul(*_operands())
    assert [lib["num_threads"] for lib in cpu_matmul._openblas_controller().info()] == before


def test_writes_into_out_and_rejects_a_wrong_buffer():
    a, b = _operands(integer=True)
    out = torch.empty(a.shape[0], b.shape[1])
    assert cpu_matmul.matmul(a, b, out=out) is out and torch.equal(out, a @ b)
    with pytest.raises(ValueError, match=r"out must be a contiguous \[300, 4000\] tensor"):
        cpu_matmul.matmul(a, b, out=torch.empty(b.shape[1], a.shape[0]).T)
    with pytest.raises(ValueError, match="out must be"):
        cpu_matmul.matmul(a, b, out=torch.empty(3, 3))


def test_small_grad_and_half_precision_products_use_torch():
    a, b = _operands(integer=True)
    assert not cpu_matmul.uses_openblas(a[:2], b[:, :10])  # too little work to hand to threads
    assert not cpu_matmul.uses_openblas(a[:64], b)  # an env step's batch: too few rows
    assert not cpu_matmul.uses_openblas(a.bfloat16(), b.bfloat16())
    assert not cpu_matmul.uses_openblas(a.requires_grad_(), b)
    product = cpu_matmul.matmul(a, b)
    assert product.requires_grad  # torch.mm kept the graph
    assert torch.equal(cpu_matmul.matmul(a.detach().bfloat16(), b.bfloat16()), a.detach().bfloat16() @ b.bfloat16())


def test_torch_can_be_chosen_with_the_environment(monkeypatch):
    monkeypatch.setenv("CHATIR_CPU_MATMUL", "torch")
    monkeypatch.setattr(cpu_matmul, "_state", {})
    a, b = _operands()
    assert not cpu_matmul.uses_openblas(a, b)
    assert torch.equal(cpu_matmul.matmul(a, b), a @ b)


def test_target_ranks_agree_between_openblas_and_torch(monkeypatch):
    """Integer-valued embeddings (exact scores, many ties): both GEMMs give the same stable ranks."""
    gen = torch.Generator().manual_seed(2)
    corpus = torch.randint(-2, 3, (8_000, 128), generator=gen).float()
    queries = torch.randint(-2, 3, (500, 128), generator=gen).float()
    targets = torch.randint(0, 8_000, (500,), generator=gen)
    assert cpu_matmul.uses_openblas(queries, corpus.T) or cpu_matmul._openblas_controller() is None
    default = target_ranks(queries, corpus, targets)
    monkeypatch.setenv("CHATIR_CPU_MATMUL", "torch")
    monkeypatch.setattr(cpu_matmul, "_state", {})
    assert torch.equal(target_ranks(queries, corpus, targets), default)
    order = torch.sort(queries @ corpus.T, dim=1, descending=True, stable=True).indices
    assert torch.equal(default, (order == targets[:, None]).nonzero()[:, 1])


@needs_openblas
def test_a_forked_child_gets_its_own_worker_threads():
    import multiprocessing

    a, b = _operands(integer=True)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # two workers: the thread pool is used
        expected = cpu_matmul.matmul(a, b)  # the parent's pool now exists
        with multiprocessing.get_context("fork").Pool(1) as pool:
            result = pool.apply_async(_child_product, (a, b))
            assert torch.equal(torch.from_numpy(result.get(timeout=60)), expected)  # a pool without threads would hang here
    finally:
        torch.set_num_threads(threads)


def _child_product(a, b):
    # Back as numpy: once torch.multiprocessing is imported (world building does), a tensor result travels
    # through torch's shared-memory file descriptors, which a plain multiprocessing.Pool child can hang on.
    return cpu_matmul.matmul(a, b).numpy()
