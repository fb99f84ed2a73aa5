"""Tests for graphbuild.query: each function, the set operators, grouping and every error."""

from __future__ import annotations

import pytest

from graphbuild.errors import UsageError
from graphbuild.graph import DiGraph
from graphbuild.query import evaluate

#   //envs:prod -> //app:bin -> //lib:core -> //lib:base
#                            -> //lib:util -> //lib:base
#   //envs:dev  -> //lib:util
#   //tools:gen-x (no edges)
KINDS = {
    "//envs:prod": "environment",
    "//envs:dev": "environment",
    "//app:bin": "genrule",
    "//lib:core": "library",
    "//lib:util": "library",
    "//lib:base": "base_library",
    "//tools:gen-x": "tool",
}
EDGES = [
    ("//envs:prod", "//app:bin"),
    ("//app:bin", "//lib:core"),
    ("//app:bin", "//lib:util"),
    ("//lib:core", "//lib:base"),
    ("//lib:util", "//lib:base"),
    ("//envs:dev", "//lib:util"),
]
ALL = set(KINDS)
LIB = {"//lib:core", "//lib:util", "//lib:base"}


def make_graph() -> DiGraph:
    graph = DiGraph()
    for label, kind in KINDS.items():
        graph.add_node(label, kind=kind)
    for source, target in EDGES:
        graph.add_edge(source, target)
    return graph


class Resolver:
    """Exact labels and `//...` / `//pkg/...` patterns; remembers every word it was asked for."""

    def __init__(self, labels: set[str]):
        self.labels = labels
        self.calls: list[str] = []

    def __call__(self, word: str) -> set[str]:
        self.calls.append(word)
        if word.endswith("/..."):
            package = word[2:-4]
            found = {
                label
                for label in self.labels
                if not package or label[2:].split(":")[0] == package or label[2:].startswith(package + "/")
            }
        else:
            found = {word} & self.labels
        if not found:
            raise UsageError(f"no targets match {word!r}")
        return found


def query(expr: str) -> set[str]:
    return evaluate(expr, make_graph(), Resolver(ALL))


def query_error(expr: str) -> UsageError:
    resolver = Resolver(ALL)
    with pytest.raises(UsageError) as caught:
        evaluate(expr, make_graph(), resolver)
    assert resolver.calls == [], "syntax errors are found before anything is resolved"
    return caught.value


# ---------------------------------------------------------------- words


def test_word_is_resolved():
    assert query("//envs:prod") == {"//envs:prod"}
    assert query("//lib/...") == LIB
    assert query("//...") == ALL


def test_quoted_strings_are_words():
    assert query("'//envs:prod'") == {"//envs:prod"}
    assert query('"//lib/..."') == LIB


def test_hyphen_inside_a_word_is_not_an_operator():
    assert query("//tools:gen-x") == {"//tools:gen-x"}


def test_every_bare_word_is_resolved_in_order():
    resolver = Resolver(ALL)
    expr = "deps(//envs:prod, 1) - kind(genrule, //...) + rdeps(//..., '//lib:base')"
    evaluate(expr, make_graph(), resolver)
    assert resolver.calls == ["//envs:prod", "//...", "//...", "//lib:base"]


def test_resolve_error_propagates_unchanged():
    failure = UsageError("no package 'nope'", hint="check the path")

    def resolve(word: str) -> set[str]:
        raise failure

    with pytest.raises(UsageError) as caught:
        evaluate("deps(//nope:x)", make_graph(), resolve)
    assert caught.value is failure


def test_labels_missing_from_graph_are_kept_but_not_expanded():
    graph = make_graph()
    assert evaluate("deps(//ghost:x)", graph, lambda word: {"//ghost:x"}) == {"//ghost:x"}
    assert evaluate("kind(genrule, //ghost:x)", graph, lambda word: {"//ghost:x"}) == set()


# ---------------------------------------------------------------- deps and rdeps


def test_deps_is_transitive_and_includes_the_argument():
    assert query("deps(//envs:prod)") == ALL - {"//envs:dev", "//tools:gen-x"}
    assert query("deps(//lib:base)") == {"//lib:base"}


def test_deps_depth_limits_distance():
    assert query("deps(//envs:prod, 0)") == {"//envs:prod"}
    assert query("deps(//envs:prod, 1)") == {"//envs:prod", "//app:bin"}
    assert query("deps(//envs:prod, 2)") == {"//envs:prod", "//app:bin", "//lib:core", "//lib:util"}
    assert query("deps(//envs:prod, 99)") == query("deps(//envs:prod)")


def test_deps_depth_counts_from_the_nearest_start():
    assert query("deps(//envs:prod + //lib:core, 1)") == {
        "//envs:prod",
        "//app:bin",
        "//lib:core",
        "//lib:base",
    }


def test_rdeps_finds_transitive_dependents_inside_the_universe():
    assert query("rdeps(//..., //lib:util)") == {"//lib:util", "//app:bin", "//envs:prod", "//envs:dev"}
    assert query("rdeps(//envs/..., //lib:util)") == {"//envs:prod", "//envs:dev"}


def test_rdeps_depth():
    assert query("rdeps(//..., //lib:base, 0)") == {"//lib:base"}
    assert query("rdeps(//..., //lib:base, 1)") == {"//lib:base", "//lib:core", "//lib:util"}
    assert query("rdeps(//..., //lib:base, 2)") == {
        "//lib:base",
        "//lib:core",
        "//lib:util",
        "//app:bin",
        "//envs:dev",
    }


def test_rdeps_of_an_unused_target_is_only_itself():
    assert query("rdeps(//..., //tools:gen-x)") == {"//tools:gen-x"}


# ---------------------------------------------------------------- kind


def test_kind_filters_by_rule_name():
    assert query("kind(environment, //...)") == {"//envs:prod", "//envs:dev"}
    assert query("kind(genrule, deps(//envs:dev))") == set()


def test_kind_pattern_is_a_regex_searched_anywhere():
    assert query("kind(library, //...)") == LIB
    assert query("kind('^library$', //...)") == {"//lib:core", "//lib:util"}
    assert query('kind("rule|tool", //...)') == {"//app:bin", "//tools:gen-x"}


# ---------------------------------------------------------------- allpaths and somepath


def test_allpaths_includes_both_ends_and_everything_between():
    assert query("allpaths(//envs:prod, //lib:base)") == {
        "//envs:prod",
        "//app:bin",
        "//lib:core",
        "//lib:util",
        "//lib:base",
    }
    assert query("allpaths(//envs/..., //lib:util)") == {
        "//envs:prod",
        "//envs:dev",
        "//app:bin",
        "//lib:util",
    }


def test_allpaths_without_a_path_is_empty():
    assert query("allpaths(//lib:base, //envs:prod)") == set()
    assert query("allpaths(//tools:gen-x, //lib/...)") == set()


def test_somepath_returns_one_path():
    path = query("somepath(//envs:prod, //lib:base)")
    assert {"//envs:prod", "//app:bin", "//lib:base"} < path
    assert len(path) == 4
    assert path & {"//lib:core", "//lib:util"}


def test_somepath_prefers_a_shortest_path():
    assert query("somepath(//envs/..., //lib:base)") == {"//envs:dev", "//lib:util", "//lib:base"}


def test_somepath_edge_cases():
    assert query("somepath(//lib:base, //envs:prod)") == set()
    assert query("somepath(//lib:core, //lib/...)") == {"//lib:core"}


# ---------------------------------------------------------------- operators and grouping


@pytest.mark.parametrize("op", ["+", "union"])
def test_union(op):
    assert query(f"//envs:prod {op} //lib:base") == {"//envs:prod", "//lib:base"}


@pytest.mark.parametrize("op", ["-", "except"])
def test_difference(op):
    assert query(f"//lib/... {op} //lib:base") == {"//lib:core", "//lib:util"}


@pytest.mark.parametrize("op", ["^", "intersect"])
def test_intersection(op):
    assert query(f"deps(//envs:dev) {op} //lib/...") == {"//lib:util", "//lib:base"}


def test_operators_share_one_precedence_and_group_left():
    assert query("//... - //lib/... + //lib:base") == ALL - LIB | {"//lib:base"}
    assert query("//lib:core + //lib:util ^ //lib:util") == {"//lib:util"}
    assert query("//lib/... - //lib:core - //lib:util") == {"//lib:base"}


def test_parentheses_group():
    assert query("//... - (//lib/... + //lib:base)") == ALL - LIB
    assert query("//lib:core + (//lib:util ^ //lib:util)") == {"//lib:core", "//lib:util"}
    assert query("((//envs:prod))") == {"//envs:prod"}


def test_caret_needs_no_spaces_and_functions_nest():
    assert query("deps(//envs:dev)^//lib/...") == {"//lib:util", "//lib:base"}
    assert query("kind(environment, rdeps(//..., deps(//lib:util, 1) - //lib:util))") == {
        "//envs:prod",
        "//envs:dev",
    }


# ---------------------------------------------------------------- errors


def test_unexpected_token_says_where():
    err = query_error("deps(//a:b))")
    assert err.message == "query: unexpected ')' at column 12 in 'deps(//a:b))'"


def test_two_words_without_an_operator():
    err = query_error("//a:b //c:d")
    assert err.message == "query: unexpected '//c:d' at column 7 in '//a:b //c:d'"
    assert "union" in err.hint


def test_comma_inside_a_word_is_part_of_it():
    resolver = Resolver(ALL | {"//lib:a,b"})
    assert evaluate("deps(//lib:a,b, 0)", make_graph(), resolver) == {"//lib:a,b"}
    assert resolver.calls == ["//lib:a,b"]


def test_comma_without_a_space_hints_at_the_fix():
    err = query_error("kind(genrule,//...)")
    assert err.message == "query: too few arguments to kind() at column 19 in 'kind(genrule,//...)'"
    assert err.hint.startswith("usage: kind(PATTERN, EXPR); a comma followed by a name")
    assert query_error("kind(genrule)").hint == "usage: kind(PATTERN, EXPR)"


def test_plus_without_spaces_is_part_of_the_word():
    resolver = Resolver(ALL)
    with pytest.raises(UsageError, match="no targets match"):
        evaluate("//lib:core+//lib:base", make_graph(), resolver)
    assert resolver.calls == ["//lib:core+//lib:base"]


def test_missing_operand():
    assert query_error("//a:b +").message == "query: unexpected end of expression at column 8 in '//a:b +'"
    assert query_error("- //a:b").message == "query: unexpected '-' at column 1 in '- //a:b'"
    assert query_error("").message == "query: unexpected end of expression at column 1 in ''"


def test_unclosed_parenthesis():
    err = query_error("(deps(//a:b)")
    assert err.message == "query: unexpected end of expression at column 13 in '(deps(//a:b)'"
    assert err.hint == "expected ')'"


def test_unexpected_character():
    err = query_error("//a:b & //c:d")
    assert err.message == "query: unexpected character '&' at column 7 in '//a:b & //c:d'"


def test_unterminated_string():
    err = query_error("kind('gen, //...)")
    assert err.message == "query: unterminated string at column 6 in \"kind('gen, //...)\""


def test_unknown_function_suggests_a_name():
    err = query_error("//... - dep(//a:b)")
    assert err.message == "query: unknown function 'dep' at column 9 in '//... - dep(//a:b)'"
    assert err.hint == "did you mean 'deps' or 'rdeps'?"
    assert query_error("somepaht(//a, //b)").hint == "did you mean 'somepath'?"


def test_unknown_function_without_a_close_name_lists_them():
    err = query_error("frobnicate(//a:b)")
    assert err.message == "query: unknown function 'frobnicate' at column 1 in 'frobnicate(//a:b)'"
    assert err.hint == "functions: allpaths, deps, kind, rdeps, somepath"


def test_too_many_arguments():
    err = query_error("deps(//a:b, 1, 2)")
    assert err.message == "query: too many arguments to deps() at column 16 in 'deps(//a:b, 1, 2)'"
    assert err.hint == "usage: deps(EXPR[, DEPTH])"


def test_too_few_arguments():
    err = query_error("kind(genrule)")
    assert err.message == "query: too few arguments to kind() at column 13 in 'kind(genrule)'"
    assert err.hint == "usage: kind(PATTERN, EXPR)"
    assert query_error("deps()").message == "query: too few arguments to deps() at column 6 in 'deps()'"
    err = query_error("rdeps(//...)")
    assert err.message == "query: too few arguments to rdeps() at column 12 in 'rdeps(//...)'"


def test_trailing_comma():
    err = query_error("somepath(//a:b,)")
    assert err.message == "query: unexpected ')' at column 16 in 'somepath(//a:b,)'"


@pytest.mark.parametrize(
    ("expr", "shown", "column"),
    [
        ("deps(//a:b, two)", "'two'", 13),
        ("deps(//a:b, -1)", "'-1'", 13),
        ("deps(//a:b, 1.5)", "'1.5'", 13),
        ("rdeps(//..., //a:b, '2')", "\"'2'\"", 21),
        ("deps(//a:b, )", "')'", 13),
    ],
)
def test_depth_must_be_an_integer(expr, shown, column):
    err = query_error(expr)
    expected = f"query: depth must be a non-negative integer, not {shown} at column {column} in {expr!r}"
    assert err.message == expected


def test_kind_pattern_errors():
    err = query_error("kind((genrule), //...)")
    assert err.message == "query: expected a kind pattern, not '(' at column 6 in 'kind((genrule), //...)'"
    err = query_error("kind('[', //...)")
    assert err.message.startswith("query: invalid kind pattern '[' (")
    assert err.message.endswith(") at column 6 in \"kind('[', //...)\"")
