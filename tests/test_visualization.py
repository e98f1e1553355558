"""Attention heatmaps, the [CLS] summary and its plot, and notebooks/attention_maps.ipynb executed headless."""
import json
import re
import sys
from pathlib import Path

import matplotlib.image
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from _train_helpers import write_random_bert
from bertjax.errors import BertjaxError
from bertjax.visualization import cls_attention_summary, plot_attention, plot_cls_attention

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "attention_maps.ipynb"


def random_maps(num_layers=3, num_heads=4, seq_len=10, real=7, seed=0) -> np.ndarray:
    """[L, 1, N, T, T] attention probabilities with the keys after `real` padded (probability 0)."""
    logits = np.random.default_rng(seed).normal(size=(num_layers, 1, num_heads, seq_len, seq_len)) * 2
    logits[..., real:] = -np.inf
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return probs / probs.sum(-1, keepdims=True)


def tick_texts(labels) -> list[str]:
    return [label.get_text() for label in labels]


def test_plot_attention_grid_of_chosen_layers_and_heads_without_padding():
    maps = random_maps()
    tokens = ["[CLS]", "the", "cat", "[SEP]", "sat", "down", "[SEP]", "[PAD]", "[PAD]", "[PAD]"]
    input_mask = (np.arange(10) < 7).astype(np.int32)[None]
    fig = plot_attention(maps, tokens, layers=[0, -1], heads=[1, 2, 3], input_mask=input_mask)

    assert len(fig.axes) == 2 * 3 + 1  # the panels and one colorbar
    panels, colorbar = fig.axes[:6], fig.axes[6]
    chosen = [(layer, head) for layer in (0, 2) for head in (1, 2, 3)]
    assert [ax.get_title() for ax in panels] == [f"layer {layer}, head {head}" for layer, head in chosen]
    for ax, (layer, head) in zip(panels, chosen):
        (image,) = ax.get_images()
        np.testing.assert_allclose(image.get_array(), maps[layer, 0, head, :7, :7], rtol=1e-6)
        assert image.get_clim() == (0.0, 1.0)
    # The real tokens label the keys below the bottom row and the queries left of the first column.
    assert [tick_texts(ax.get_xticklabels()) for ax in panels] == [[]] * 3 + [tokens[:7]] * 3
    assert [tick_texts(ax.get_yticklabels()) for ax in panels] == [tokens[:7], [], []] * 2
    assert colorbar.get_ylim() == (0.0, 1.0)
    assert [ax.yaxis.get_label().get_text() for ax in panels] == ["query", "", "", "query", "", ""]
    assert [ax.xaxis.get_label().get_text() for ax in panels] == ["", "", "", "key", "key", "key"]


def test_plot_attention_takes_the_real_tokens_of_one_example():
    maps = random_maps(num_layers=2, num_heads=2)
    tokens = ["[CLS]", "a", "[SEP]", "b", "[SEP]"]
    fig = plot_attention(maps[:, 0], tokens)  # [L, N, T, T]; padding = the positions after the tokens
    assert len(fig.axes) == 2 * 2 + 1
    for ax in fig.axes[:4]:
        assert ax.get_images()[0].get_array().shape == (5, 5)
    assert tick_texts(fig.axes[2].get_xticklabels()) == tick_texts(fig.axes[2].get_yticklabels()) == tokens


@pytest.mark.parametrize("kwargs,message", [
    (dict(layers=[0, 3]), r"layers: layer 3 does not exist; the maps have 3 layers, pick from 0\.\.2"),
    (dict(heads=[-5]), r"heads: head -5 does not exist; the maps have 4 heads, pick from 0\.\.3"),
    (dict(layers=[]), r"layers is empty"),
    (dict(example=1), r"example=1 is out of range: the maps hold 1 examples"),
    (dict(input_mask=np.ones((1, 10)), tokens=["[CLS]"] * 4), r"tokens has 4 entries but input_mask marks 10"),
    (dict(tokens=["x"] * 11), r"tokens has 11 entries but the maps have 10 positions"),
    (dict(input_mask=np.ones(9)), r"input_mask has shape \(9,\); it must be \[B, 10\] or \[10\]"),
])
def test_plot_attention_bad_input(kwargs, message):
    kwargs = {"tokens": ["[CLS]", "a", "[SEP]"], **kwargs}
    with pytest.raises(BertjaxError, match=message):
        plot_attention(random_maps(), **kwargs)


def test_plotting_without_matplotlib_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if matplotlib were absent
    with pytest.raises(BertjaxError, match=r"pip install -e '\.\[notebook\]'"):
        plot_attention(random_maps(), ["[CLS]"])


def hand_map() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """A 1-layer, 2-head map of [CLS] a [SEP] b [SEP] [PAD] with known [CLS] rows."""
    maps_LxNxTxT = np.full((1, 2, 6, 6), 0.2)
    maps_LxNxTxT[..., 5] = 0.0
    maps_LxNxTxT[0, 0, 0] = [0.1, 0.2, 0.3, 0.25, 0.15, 0.0]
    maps_LxNxTxT[0, 1, 0] = [0.5, 0.5, 0.0, 0.0, 0.0, 0.0]
    return (maps_LxNxTxT[:, None], np.array([[1, 1, 1, 1, 1, 0]]), np.array([[0, 0, 0, 1, 1, 0]]),
            ["[CLS]", "a", "[SEP]", "b", "[SEP]", "[PAD]"])


@pytest.mark.parametrize("sep_from", ["layout", "tokens", "real tokens", "positions"])
def test_cls_attention_summary_matches_a_hand_computation(sep_from):
    maps, input_mask, segment_ids, tokens = hand_map()
    sep = {"layout": {}, "tokens": dict(tokens=tokens), "real tokens": dict(tokens=tokens[:5]),
           "positions": dict(sep_positions=[2, 4])}[sep_from]
    summary = cls_attention_summary(maps, input_mask, segment_ids, **sep)

    np.testing.assert_allclose(summary["cls_LxN"], [[0.1, 0.5]])
    np.testing.assert_allclose(summary["sep_LxN"], [[0.3 + 0.15, 0.0]])
    np.testing.assert_allclose(summary["segment_a_LxN"], [[0.2, 0.5]])
    np.testing.assert_allclose(summary["segment_b_LxN"], [[0.25, 0.0]])
    head0 = -sum(p * np.log(p) for p in [0.1, 0.2, 0.3, 0.25, 0.15])
    np.testing.assert_allclose(summary["entropy_LxN"], [[head0, np.log(2)]])
    for name in ("cls", "sep", "segment_a", "segment_b", "entropy"):
        np.testing.assert_allclose(summary[f"{name}_L"], summary[f"{name}_LxN"].mean(-1))
    np.testing.assert_allclose(summary["uniform_entropy"], np.log(5))


def test_cls_attention_masses_sum_to_at_most_one():
    maps = random_maps(seq_len=12, real=9, seed=3)
    input_mask = (np.arange(12) < 9)[None]
    segment_ids = ((np.arange(12) >= 5) & (np.arange(12) < 9))[None].astype(np.int32)
    summary = cls_attention_summary(maps, input_mask, segment_ids)
    total_LxN = sum(summary[f"{part}_LxN"] for part in ("cls", "sep", "segment_a", "segment_b"))
    assert np.all(total_LxN <= 1 + 1e-6)
    np.testing.assert_allclose(total_LxN, 1.0, atol=1e-6)  # the padded keys get nothing
    assert summary["cls_L"].shape == (3,) and summary["entropy_LxN"].shape == (3, 4)
    assert np.all(summary["entropy_LxN"] <= summary["uniform_entropy"] + 1e-6)


def test_cls_attention_summary_bad_sep_positions():
    maps, input_mask, segment_ids, _ = hand_map()
    with pytest.raises(BertjaxError, match=r"sep_positions: 6 is not a position of the maps; pick from 0\.\.5"):
        cls_attention_summary(maps, input_mask, segment_ids, sep_positions=[2, 6])


def test_plot_cls_attention_stacks_the_four_parts_per_layer():
    maps = random_maps()
    summary = cls_attention_summary(maps, (np.arange(10) < 7)[None], ((np.arange(10) >= 4) & (np.arange(10) < 7))[None])
    fig = plot_cls_attention(summary)
    assert len(fig.axes) == 2
    mass_ax, entropy_ax = fig.axes
    heights = np.array([bar.get_height() for bar in mass_ax.patches]).reshape(4, 3)  # part x layer
    np.testing.assert_allclose(heights, [summary[f"{part}_L"] for part in ("cls", "sep", "segment_a", "segment_b")],
                               rtol=1e-6)
    assert [text.get_text() for text in mass_ax.get_legend().get_texts()] == ["[CLS]", "[SEP]", "segment A",
                                                                               "segment B"]


# ----------------------------------------------------------------------------------------------------------------
# The notebook


def parameters_cell(nb) -> tuple[int, dict]:
    """(index, values) of the notebook's cell tagged `parameters` (papermill's convention)."""
    (index,) = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    values = {}
    exec(nb.cells[index].source, values)  # noqa: S102  (our own notebook's constants)
    return index, values


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert parameters_cell(nb)[0] == 1  # the first code cell
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def python3_kernelspec(jupyter_dir: Path) -> Path:
    """A `python3` kernelspec running this interpreter, so the kernel sees the same environment as the test."""
    spec_dir = jupyter_dir / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (this test's interpreter)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    return jupyter_dir


@pytest.mark.slow
def test_notebook_runs_headless_on_a_tiny_checkpoint(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    index, defaults = parameters_cell(nb)
    text = f"{defaults['SENTENCE_A']} {defaults['SENTENCE_B']}".lower()
    config = write_random_bert(tmp_path / "hf", re.findall(r"\w+|[^\w\s]", text), hidden_size=32,
                               num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                               max_position_embeddings=64)
    figures = tmp_path / "figures"
    # Injected after the parameters cell, as papermill does: the notebook's own cells run unchanged.
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(
        f"CHECKPOINT = {str(tmp_path / 'hf')!r}\nFIGURE_DIR = {str(figures)!r}",
        metadata={"tags": ["injected-parameters"]}))

    # The kernel inherits this environment: this interpreter's kernelspec first, the repo importable, JAX on the CPU.
    monkeypatch.setenv("JUPYTER_PATH", str(python3_kernelspec(tmp_path / "jupyter")))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    client = NotebookClient(nb, kernel_name="python3", timeout=120,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()

    outputs = [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]
    assert sum("image/png" in output.get("data", {}) for output in outputs) == 2
    # show(...): the interactive viewer inline, the whole page (data, script) in the cell's output, offline
    (viewer,) = [output["data"]["text/html"] for output in outputs if "text/html" in output.get("data", {})]
    assert viewer.startswith("<iframe srcdoc=") and "bertjax-attention-view/1" in viewer
    assert "window.bertjaxView" in viewer and "https://" not in viewer
    printed = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    assert "[CLS] a single man" in printed and "[MASK]" in printed
    assert len(re.findall(r"'wife' at position \d+: (\S+ \d\.\d{3}(, )?){5}$", printed, re.MULTILINE)) == 1
    axes = json.loads(printed.strip().splitlines()[-1])
    heads = defaults["HEADS"] or range(config.num_attention_heads)
    assert axes == {"attention_axes": len(defaults["LAYERS"]) * len(heads) + 1, "cls_axes": 2}
    for name in ("attention.png", "cls_attention.png"):
        image = matplotlib.image.imread(figures / name)
        assert image.shape[0] > 200 and image.shape[1] > 400
