"""The YAML reader: YAML 1.2 scalars, merges, positions, and problems instead of exceptions."""

from __future__ import annotations

from allmende.inventory.yamlpos import dotted, parse


def data(text: str) -> object:
    doc, problems = parse(text.encode(), "f.yaml")
    assert problems == []
    return doc.data


def test_norway_and_friends_stay_text() -> None:
    assert data("country: NO\na: no\nb: on\nc: off\nd: yes\ne: y\n") == {
        "country": "NO",
        "a": "no",
        "b": "on",
        "c": "off",
        "d": "yes",
        "e": "y",
    }


def test_only_true_and_false_are_booleans_and_numbers_are_yaml_1_2() -> None:
    assert data("a: true\nb: False\nc: 0755\nd: 0o17\ne: 0x1f\nf: 1.5\ng: 1_000\nh: ~\ni:\n") == {
        "a": True,
        "b": False,
        "c": 755,
        "d": 15,
        "e": 31,
        "f": 1.5,
        "g": "1_000",
        "h": None,
        "i": None,
    }


def test_quoted_values_are_always_text() -> None:
    assert data("a: '8080'\nb: \"true\"\n") == {"a": "8080", "b": "true"}


def test_merge_keys_and_anchors_work_like_compose() -> None:
    text = "base: &b {image: x:1, replicas: 2}\napp:\n  <<: *b\n  replicas: 3\n"
    assert data(text) == {
        "base": {"image": "x:1", "replicas": 2},
        "app": {"image": "x:1", "replicas": 3},
    }


def test_positions_of_keys_and_values_are_one_based() -> None:
    doc, _ = parse(b"a:\n  b:\n    - x\n    - y: 1\n", "f.yaml")
    assert doc.values[("a", "b", 1, "y")] == (4, 10)
    assert doc.keys[("a", "b")] == (2, 3)
    assert str(doc.locate(("a", "b", 1, "missing"))) == "f.yaml:4:7"
    assert dotted(("a", "b", 1, "y")) == "a.b[1].y"


def test_duplicate_keys_are_a_problem_at_the_second_one() -> None:
    _, problems = parse(b"a: 1\nb: 2\na: 3\n", "f.yaml")
    assert [str(p) for p in problems] == [
        "f.yaml:3:1: a: duplicate key `a` (first at line 1) (remove one of them)"
    ]


def test_recursive_aliases_do_not_hang() -> None:
    _, problems = parse(b"a: &x [*x]\n", "f.yaml")
    assert problems  # either a YAML error or "recursive alias", never an exception


def test_a_byte_order_mark_is_fine() -> None:
    assert data("\ufeffa: 1\n") == {"a": 1}
