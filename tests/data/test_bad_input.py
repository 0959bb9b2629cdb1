"""One test per class of bad input: a clear error naming file/line/column, exit code 2 from the
CLI, a typed exception from Python, and no output directory left behind."""

from __future__ import annotations

import pytest

from chronorec.cli import main
from chronorec.data.prepare import PrepareOptions, prepare
from chronorec.data.readers import ColumnMap, read
from chronorec.errors import DataError


def _cli_fails(capsys, tmp_path, *args: str) -> str:
    out = tmp_path / "out"
    code = main(["prepare", *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    assert "Traceback" not in err
    return err


def test_missing_file(capsys, tmp_path):
    err = _cli_fails(capsys, tmp_path, "--format", "csv", "--events", str(tmp_path / "nope.csv"))
    assert "nope.csv: file not found" in err


def test_missing_column(capsys, tmp_path, write):
    p = write("e.csv", "user,item_id,timestamp\n1,2,3\n")
    err = _cli_fails(capsys, tmp_path, "--format", "csv", "--events", str(p))
    assert "e.csv" in err and "column 'user_id'" in err and "the file has: user, item_id" in err


def test_unparseable_timestamp_names_line_and_column(capsys, tmp_path, write):
    p = write("e.csv", "user_id,item_id,timestamp\n1,2,100\n1,3,abc\n")
    err = _cli_fails(capsys, tmp_path, "--format", "csv", "--events", str(p))
    assert "e.csv, line 3, column 'timestamp'" in err and "'abc'" in err


def test_empty_id(capsys, tmp_path, write):
    p = write("e.csv", "user_id,item_id,timestamp\n1,2,100\n,3,101\n")
    err = _cli_fails(capsys, tmp_path, "--format", "csv", "--events", str(p))
    assert "line 3, column 'user_id'" in err and "empty" in err


def test_truncated_last_line(capsys, tmp_path, write):
    p = write("e.csv", "user_id,item_id,timestamp\n1,2,100\n1,3")
    err = _cli_fails(capsys, tmp_path, "--format", "csv", "--events", str(p))
    assert "line 3, column 'timestamp'" in err and "truncated" in err


def test_truncated_sasrec_line(tmp_path, write):
    p = write("ml.txt", "1 1\n1 2\n2\n")
    with pytest.raises(DataError, match=r"line 3.*truncated"):
        read("sasrec-txt", p)


def test_wrong_encoding(capsys, tmp_path, write):
    p = write("e.csv", b"user_id,item_id,timestamp\n1,2,100\n1,caf\xe9,101\n")
    err = _cli_fails(capsys, tmp_path, "--format", "csv", "--events", str(p))
    assert "e.csv, line 3" in err and "UTF-8" in err and "--encoding" in err
    # and the suggested fix works
    assert (
        main(
            [
                "prepare",
                "--format",
                "csv",
                "--events",
                str(p),
                "--encoding",
                "latin-1",
                "--out",
                str(tmp_path / "ok"),
            ]
        )
        == 0
    )


def test_duplicated_header(capsys, tmp_path, write):
    p = write("e.csv", "user_id,item_id,timestamp\n1,2,100\nuser_id,item_id,timestamp\n1,3,101\n")
    err = _cli_fails(capsys, tmp_path, "--format", "csv", "--events", str(p))
    assert "line 3" in err and "header" in err


def test_unknown_behaviour_with_fixed_vocabulary(capsys, tmp_path, write):
    p = write("e.csv", "user_id,item_id,timestamp,b\n1,2,100,view\n1,3,101,wishlist\n")
    err = _cli_fails(
        capsys,
        tmp_path,
        "--format",
        "csv",
        "--events",
        str(p),
        "--behaviour-col",
        "b",
        "--behaviours",
        "view,cart,buy",
    )
    assert "line 3" in err and "'wishlist'" in err and "view, cart, buy" in err
    raw = read("csv", p, columns=ColumnMap(behaviour="b"))
    with pytest.raises(DataError):
        prepare(raw, PrepareOptions(behaviours=("view", "buy")))


def test_unknown_taobao_behaviour(tmp_path, write):
    p = write("ub.csv", "1,100,7,pv,1511544070\n1,101,7,click,1511544000\n")
    with pytest.raises(DataError, match=r"ub.csv, line 2, column 'behavior'.*'click'"):
        read("taobao", p)


def test_existing_output_is_not_touched(capsys, tmp_path, write):
    p = write("e.csv", "user_id,item_id,timestamp\n1,2,100\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["prepare", "--format", "csv", "--events", str(p), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


def test_not_a_prepared_dir(capsys, tmp_path):
    assert main(["stats", str(tmp_path)]) == 2
    assert "manifest.json" in capsys.readouterr().err
