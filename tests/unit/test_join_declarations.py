"""What an outcome call declares of a model's months (monitor.state.joins): the months most recently
needed, at most DECLARED_OUTCOME_MONTHS unless one call needs more, so that a model of 1,000 months
does not declare every month it ever joined on every call."""

from monitor.months import add
from monitor.state.joins import DECLARED_OUTCOME_MONTHS, UNDECLARED_MONTHS, JoinOps


def learnt(ops: JoinOps, *months: str) -> list[str]:
    ops.learn_join_status("m", "1", UNDECLARED_MONTHS, " ".join(months).encode())
    return ops._outcome_months[("m", "1")]


def test_the_months_an_outcome_call_declares_are_the_most_recently_needed_few():
    ops = JoinOps()
    ops.init_join_declarations()
    for i in range(100):  # outcomes for the records of one month after another
        learnt(ops, add("2020-01", i))
    assert learnt(ops, "2027-01", "2027-02")[:2] == ["2027-01", "2027-02"]
    assert len(ops._outcome_months[("m", "1")]) == DECLARED_OUTCOME_MONTHS


def test_a_call_that_needs_more_months_declares_them_all():
    ops = JoinOps()
    ops.init_join_declarations()
    many = [add("2020-01", i) for i in range(DECLARED_OUTCOME_MONTHS + 5)]
    assert learnt(ops, *many) == many
