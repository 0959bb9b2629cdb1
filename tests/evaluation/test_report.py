from chronorec.evaluation import markdown_table


def test_markdown_table_aligns_and_formats() -> None:
    table = markdown_table(
        [
            {"model": "a|b", "ndcg@10": 0.12345, "n": 1234, "excl": False},
            {"model": "c", "ndcg@10": float("nan"), "n": 5, "excl": True},
        ],
    )
    lines = table.splitlines()
    assert lines[0] == "| model | ndcg@10 |     n | excl  |"
    assert lines[1] == "| ----- | ------: | ----: | ----- |"
    assert lines[2] == "| a\\|b  |  0.1235 | 1,234 | false |"
    assert "–" in lines[3]
