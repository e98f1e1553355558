"""text.py: input globs, lines, and shards planned as byte ranges that hold whole documents."""
import random

import numpy as np
import pytest

from bertjax.data import corpus, text


def _shard_docs(shards):
    """Documents (lists of non-blank lines) of each shard, as the workers read them."""
    return [corpus.blank_line_documents(text.read_shard_text(shard)[0]) for shard in shards]


def _all_docs(files):
    """Documents of the files read line by line (iter_lines), a file end ending a document."""
    docs = []
    for path in files:
        doc = []
        for line in text.iter_lines(path, text.TextStats()):
            if line.strip():
                doc.append(line)
            elif doc:
                docs.append(doc)
                doc = []
        if doc:
            docs.append(doc)
    return docs


def test_shards_hold_whole_documents(tmp_path):
    a = tmp_path / "a.txt"
    a.write_bytes(b"s1\ns2\n\n   \ns3\n\t\ns4\nbad \xff\xfe utf8\n")
    b = tmp_path / "b.txt"
    b.write_bytes(b"s5\n\n\ns6\n")
    shards = list(text.plan_text_shards([a, b], shard_bytes=3))
    assert _shard_docs(shards) == [[["s1", "s2"]], [["s3"]], [["s4", "bad \ufffd\ufffd utf8"]], [["s5"]], [["s6"]]]
    assert [s.index for s in shards] == [0, 1, 2, 3, 4]
    stats = [text.read_shard_text(s)[1] for s in shards]
    assert sum(s.invalid_utf8_lines for s in stats) == 1
    assert sum(s.lines for s in stats) == 8 + 4  # lines read, blank ones included
    assert sum(s.bytes for s in stats) == sum(s.num_bytes for s in shards) == a.stat().st_size + b.stat().st_size
    assert all(text.read_shard_text(s)[0][-1] == "" for s in shards)
    long_doc = tmp_path / "long_doc.txt"
    long_doc.write_text("".join(f"line {i}\n" for i in range(20)))
    cut = list(text.plan_text_shards([long_doc], shard_bytes=10))  # a document over 4x the size is cut at line ends
    assert len(cut) == 4 and all(40 <= s.num_bytes <= 48 for s in cut[:-1])
    assert [line for s in cut for line in text.read_shard_text(s)[0] if line] == [f"line {i}" for i in range(20)]
    big = list(text.plan_text_shards([a, b], shard_bytes=1 << 20))
    assert len(big) == 1 and big[0].num_bytes == a.stat().st_size + b.stat().st_size
    assert _shard_docs(big) == [_all_docs([a, b])]


@pytest.mark.parametrize("seed", range(4))
def test_shards_cover_the_corpus_exactly(tmp_path, seed):
    """Random corpora (blank and whitespace-only lines, CRLF, invalid UTF-8, long documents): the shards together
    hold exactly the documents that reading line by line gives, and each stays near its size."""
    rng = random.Random(seed)
    files = []
    for f in range(3):
        parts = []
        for _ in range(rng.randint(0, 60)):
            for _ in range(rng.choice([1, 2, 5, 40])):
                word = rng.choice(["w", "hé", "x" * 30, "\xff", "中"])
                parts.append((" ".join([word] * rng.randint(1, 8)) + rng.choice(["\n", "\r\n"])).encode("utf-8", "replace")
                             if word != "\xff" else b"bad \xff line\n")
            parts.append(rng.choice([b"\n", b"  \n", b"\t\r\n", b"\xc2\xa0\n"]))  # U+00A0: blank, never a cut
        path = tmp_path / f"{f}.txt"
        path.write_bytes(b"".join(parts)[:-rng.randint(0, 1) or None])  # sometimes no final newline
        files.append(path)
    shard_bytes = rng.choice([50, 300, 2000])
    shards = list(text.plan_text_shards(files, shard_bytes))
    shard_docs = [d for docs in _shard_docs(shards) for d in docs]
    all_docs = _all_docs(files)
    assert [line for d in shard_docs for line in d] == [line for d in all_docs for line in d]
    ends = lambda docs: set(np.cumsum([len(d) for d in docs]).tolist())  # noqa: E731
    assert ends(all_docs) <= ends(shard_docs)  # only documents over 4 shard sizes are cut
    assert sum(s.num_bytes for s in shards) == sum(p.stat().st_size for p in files)
    longest_line = max(len(line) for p in files for line in p.read_bytes().split(b"\n"))
    assert all(s.num_bytes <= 4 * shard_bytes + longest_line + 1 for s in shards)


def test_long_lines_are_cut_at_character_boundaries(tmp_path, monkeypatch):
    monkeypatch.setattr(text, "MAX_LINE_BYTES", 10)
    path = tmp_path / "long.txt"
    path.write_text("ééééééééééé x\nok\n", encoding="utf-8")  # 22 bytes of é
    stats = text.TextStats()
    lines = list(text.iter_lines(path, stats))
    assert "".join(lines[:-1]) == "ééééééééééé x" and lines[-1] == "ok"
    assert stats.split_long_lines >= 2 and stats.invalid_utf8_lines == 0
    exact = tmp_path / "exact.txt"
    exact.write_bytes(b"0123456789\nabc\n")  # a line of exactly MAX_LINE_BYTES is whole (no blank line after it)
    assert list(text.iter_lines(exact, text.TextStats())) == ["0123456789", "abc"]
    assert text.read_shard_text(next(text.plan_text_shards([exact], shard_bytes=1)))[0][:2] == ["0123456789", ""]
    assert [line for s in text.plan_text_shards([exact], 1) for line in text.read_shard_text(s)[0] if line] == [
        "0123456789", "abc"]
    shards = list(text.plan_text_shards([path], shard_bytes=1))  # shards cut inside the long line, never a character
    pieces = [line for s in shards for line in text.read_shard_text(s)[0] if line]
    assert "".join(pieces[:-1]) == "ééééééééééé x" and pieces[-1] == "ok"
    assert sum(text.read_shard_text(s)[1].split_long_lines for s in shards) >= 2


def test_expand_input_files_globs_and_lists(tmp_path):
    for name in ("b.txt", "a.txt", "c.md"):
        (tmp_path / name).write_text("x\n")
    got = text.expand_input_files(f"{tmp_path}/*.txt,{tmp_path}/c.md,{tmp_path}/a.txt")
    assert [p.name for p in got] == ["a.txt", "b.txt", "c.md"]
