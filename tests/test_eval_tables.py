"""Tables regenerated from a results folder made here, with the paper's columns and numbers beside them."""

from __future__ import annotations

import csv

import pytest

from learn2diss.cli import main
from learn2diss.eval.results import ResultRow, append_rows, checkpoint_hash, read_rows
from learn2diss.eval.tables import GROUPS, TABLES, build_table, paper_values, resolve_names


def row(eval_, model, dataset, condition, metric, value, **kw):
    return ResultRow(eval_, model, dataset, condition, metric, value, checkpoint_hash="c0ffee123456",
                     config="l2d_h12", date="2026-01-02", **kw)


def test_paper_numbers_cover_tables_2_to_8():
    values = paper_values()
    assert {v.table for v in values} == {"2", "3", "4", "5", "6", "7", "8"}
    lookup = {(v.table, v.model, v.variant, v.column): v for v in values}
    # spot checks against the paper text
    assert lookup["3", "L2D-H12", "", "within/clean"].value == 2.42
    assert lookup["3", "HuBERT", "", "across/other"].value == 6.19
    assert lookup["2", "ContentVec", "", "utt/ASV"].marker == "*"
    assert lookup["2", "Spin", "", "utt/SID"].value is None
    assert lookup["4", "L2D-W12", "", "100h/other"].value == 6.8
    assert lookup["5", "L2D-W12", "no-mi", "frame/SID"].value == 79.47
    assert lookup["6", "L2D-W12", "final-layers", "utt/PR"].value == 38.19
    assert lookup["7", "WavLM", "", "10h/clean"].marker == "*"
    assert lookup["8", "L2D-W12", "", "speaker_purity"].value == 94.33
    assert sum(v.table == "3" for v in values) == 10 * 4


def test_results_rows_merge_by_key(tmp_path):
    path = tmp_path / "abx.csv"
    append_rows(path, [row("abx", "L2D-H12", "dev-clean", "within", "abx_error", 3.0)])
    append_rows(path, [row("abx", "L2D-H12", "dev-clean", "within", "abx_error", 2.5),
                       row("abx", "L2D-H12", "dev-clean", "across", "abx_error", 3.5)])
    assert sorted((r.condition, r.value) for r in read_rows(path)) == [("across", 3.5), ("within", 2.5)]


def test_table3_yours_beside_paper_with_difference_and_provenance():
    rows = [row("abx", "l2d_h12", "dev-clean", "within", "abx_error", 2.50),
            row("abx", "l2d_h12", "dev-other", "within", "abx_error", 3.00),
            row("abx", "l2d_h12", "demo", "within", "abx_error", 7.25)]
    columns, table = build_table(TABLES["3"], [*rows, row("abx", "l2d_h12", "demo", "across", "abx_error", 9.0)])
    assert columns == ["within/clean", "within/other", "across/clean", "across/other", "within/demo", "across/demo"]
    ours = [r for r in table if r.model == "L2D-H12"]  # matched to the paper's row despite the spelling
    assert [r.source for r in ours] == ["paper", "yours", "Δ"]
    assert ours[1].values == {"within/clean": "2.50", "within/other": "3.00", "within/demo": "7.25", "across/demo": "9.00"}
    assert ours[2].values == {"within/clean": "+0.08", "within/other": "+0.20"}
    assert "c0ffee123456" in ours[1].note and "l2d_h12" in ours[1].note and "2026-01-02" in ours[1].note


def test_dev_set_ctc_rows_go_to_table7_and_test_sets_to_table4():
    """The demo corpus's ``dev`` folder (and ``val``) is a development set: Table 7, never a Table 4 column."""
    rows = [row("ctc", "demo-parent", "dev", "demo", "wer", 80.0), row("ctc", "demo-parent", "test", "demo", "wer", 85.0),
            row("ctc", "L2D-W12", "dev-other", "10h", "wer", 8.0)]
    columns4, table4 = build_table(TABLES["4"], rows)
    columns7, table7 = build_table(TABLES["7"], rows)
    assert "demo/test" in columns4 and "demo/dev" not in columns4 and "10h/other" not in [
        c for r in table4 if r.source == "yours" for c in r.values]
    assert "demo/dev" in columns7 and "demo/test" not in columns7
    assert next(r for r in table7 if r.model == "L2D-W12" and r.source == "yours").values == {"10h/other": "8.00"}


def test_provenance_names_checkpoint_and_config_once():
    """A model's SUPERB tasks read different datasets on different days: one provenance, each value once."""
    rows = [row("superb", "L2D-W12", task.lower(), f"frame/{task}", "acc", 90.0) for task in ("PR", "KS", "IC")]
    rows.append(ResultRow("superb", "L2D-W12", "sid", "utt/SID", "acc", 80.0, checkpoint_hash="c0ffee123456",
                          config="l2d_h12", date="2026-01-05"))
    _, table = build_table(TABLES["2"], rows)
    note = next(r for r in table if r.model == "L2D-W12" and r.source == "yours").note
    assert note == "ckpt c0ffee123456 · config l2d_h12 · 2026-01-02..2026-01-05 · ic,ks,pr,sid"


def test_table8_averages_clean_and_other():
    rows = [row("purity", "HuBERT", "test-clean", "frame:last", "phone_purity", 70.0),
            row("purity", "HuBERT", "test-other", "frame:last", "phone_purity", 72.0)]
    _, table = build_table(TABLES["8"], rows)
    yours = next(r for r in table if r.model == "HuBERT" and r.source == "yours")
    assert yours.values == {"phone_purity": "71.00"}


def test_unknown_table_name_is_an_error():
    assert resolve_names(["superb"]) == list(GROUPS["superb"])
    with pytest.raises(ValueError, match="unknown table '9'"):
        resolve_names(["9"])


def test_tables_command_regenerates_all_formats(tmp_path, capsys):
    results = tmp_path / "results"
    append_rows(results / "abx.csv", [row("abx", "L2D-H12", "dev-clean", "within", "abx_error", 2.5)])
    append_rows(results / "ctc.csv", [row("ctc", "L2D-W12", "test-clean", "10h", "wer", 3.9),
                                      row("ctc", "L2D-W12", "dev-clean", "10h", "wer", 3.3)])
    append_rows(results / "purity.csv", [row("purity", "L2D-W12", "test-clean", "frame:last", "phone_purity", 70.5)])
    append_rows(results / "probes.csv", [row("probes", "L2D-W12", "demo", "frame", "speaker_id_acc", 40.0)])
    append_rows(results / "superb.csv", [row("superb", "L2D-W12", "superb", "utt/SID", "acc", 95.0)])
    out = tmp_path / "tables"
    assert main(["tables", "--results", str(results), "--out", str(out)]) == 0
    for table_id in ("2", "3", "4", "5", "6", "7", "8", "probes"):
        for suffix in (".md", ".tex", ".csv"):
            assert (out / f"table{table_id}{suffix}").is_file()
    md3 = (out / "table3.md").read_text()
    assert "| within/clean | within/other | across/clean | across/other |" in md3
    assert "| L2D-H12 | yours | 2.50 |" in md3 and "| L2D-H12 | Δ | +0.08 |" in md3
    assert r"\begin{tabular}" in (out / "table4.tex").read_text()
    with open(out / "table4.csv") as handle:
        lines = {(r["model"], r["column"]): r for r in csv.DictReader(handle)}
    assert (lines["L2D-W12", "10h/clean"]["paper"], lines["L2D-W12", "10h/clean"]["yours"],
            lines["L2D-W12", "10h/clean"]["diff"]) == ("3.60", "3.90", "+0.30")
    assert "| L2D-W12 | yours |  |  | 3.30 |" in (out / "table7.md").read_text()
    assert "| L2D-W12 | yours | 40.00 |" in (out / "tableprobes.md").read_text()
    assert "95.00" in (out / "table2.md").read_text()
    assert "Table 8" in capsys.readouterr().out


def test_checkpoint_hash_is_of_the_weights_not_the_file_bytes(tmp_path):
    """safetensors orders its header metadata differently in each process: equal weights saved by two
    processes must still get one hash, and any change of a tensor's values, name or shape a new one."""
    import subprocess
    import sys

    save = ("import sys, torch; from safetensors.torch import save_file; "
            "torch.manual_seed(0); w = {'b': torch.randn(3, 2), 'a': torch.arange(4.0)}; "
            "w.update(eval(sys.argv[2])); "
            "save_file(w, sys.argv[1], metadata={'format': 'learn2diss', 'version': '1', 'x': 'y', 'z': 'w'})")
    variants = {"same-0": "{}", "same-1": "{}", "same-2": "{}", "same-3": "{}", "value": "{'a': torch.arange(4.0) + 1}",
                "name": "{'c': w.pop('a')}", "shape": "{'a': torch.arange(4.0).reshape(2, 2)}"}
    hashes, files = {}, set()
    for name, change in variants.items():
        path = tmp_path / name / "model.safetensors"
        path.parent.mkdir()
        subprocess.run([sys.executable, "-c", save, str(path), change], check=True)
        hashes[name] = checkpoint_hash(path.parent)
        files.add(path.read_bytes())
    assert len({hashes[f"same-{i}"] for i in range(4)}) == 1
    assert len({hashes["same-0"], hashes["value"], hashes["name"], hashes["shape"]}) == 4
    assert len(files) > 4, "the four equal saves gave identical files: the test no longer shows the header order"
