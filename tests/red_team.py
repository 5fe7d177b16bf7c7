"""The red team's attacks on the loader (issue 10) and the tests that prove each now holds.

Why a table: the attacks are the project's memory of how data was lost or mixed; each must keep
a regression test, and a reader must see at a glance which test guards which attack. The root
conftest records every listed test's outcome during ``make test`` and writes the table, with
"held" or what happened, to ``reports/red_team.md`` (and prints it at the end of the run).
An attack whose test did not run says so: a renamed test cannot silently drop an attack.
"""

from __future__ import annotations

from pathlib import Path

REPORT_PATH = Path(__file__).resolve().parents[1] / "reports" / "red_team.md"

ATTACKS: tuple[tuple[str, str], ...] = (
    ("a universe change deletes other instruments' bars",
     "tests/integration/warehouse/test_wh_live_equals_replay.py::test_a_universe_change_keeps_the_other_instruments_bars"),
    ("replay adds a partial partition (the over-fetched tail)",
     "tests/integration/warehouse/test_wh_live_equals_replay.py::test_live_load_and_replay_of_its_raw_zone_are_byte_identical"),
    ("an empty positions page mid-listing stores a partial snapshot",
     "tests/e2e/test_prove_positions_listing.py::test_a_listing_that_stays_cut_fails_and_stores_nothing"),
    ("an empty account keeps showing old positions",
     "tests/e2e/test_prove_positions_listing.py::test_an_empty_account_is_a_flat_snapshot"),
    ("one unparseable quote value fails the whole snapshot",
     "tests/e2e/test_prove_bad_data.py::test_an_unreadable_quote_value_costs_its_instrument_only"),
    ("one bar with a null close fails the whole run",
     "tests/e2e/test_prove_bad_data.py::test_an_unreadable_bar_value_costs_its_bar_only"),
    ("same-size corruption of a part.parquet goes unnoticed",
     "tests/integration/warehouse/test_wh_integrity.py::test_same_size_corruption_is_found_and_named"),
    ("a re-run skips a corrupt partition as complete",
     "tests/e2e/test_prove_integrity.py::test_a_rerun_refetches_a_damaged_partition_and_skips_the_rest"),
    ("a garbled manifest blocks re-runs and `manifest`",
     "tests/integration/warehouse/test_wh_integrity.py::test_a_garbled_manifest_is_reported_not_fatal"),
    ("two backfills at once livelock on the penalty box",
     "tests/integration/ibkr/test_client_lease.py::test_two_processes_queue_behind_the_lease_and_never_trip_a_429"),
    ("a penalty box is waited out in lockstep, again and again",
     "tests/unit/ibkr/test_client_penalty_box.py::test_a_second_penalty_box_is_not_waited_out_again"),
    ("concurrent first runs corrupt the sqlite instance",
     "tests/e2e/test_dagster_instance.py::test_first_runs_of_three_processes_on_a_fresh_sqlite_instance_succeed"),
    ("a killed run stays STARTED forever",
     "tests/e2e/test_dagster_postgres.py::test_a_killed_run_is_marked_failed_by_run_monitoring"),
    ("an interrupted backfill leaves its run STARTED",
     "tests/e2e/test_dagster_instance.py::test_a_terminated_command_leaves_its_run_canceled_not_started"),
    ("no production instance: runs bypass the queue",
     "tests/e2e/test_dagster_postgres.py::test_runs_submitted_at_once_run_one_after_the_other"),
    ("a bearer token is sent over plain HTTP",
     "tests/unit/ibkr/test_client_settings.py::test_a_bearer_token_is_never_sent_over_plain_http_to_a_remote_host"),
    ("a login page is 'invalid JSON', retried 5 times",
     "tests/unit/ibkr/test_client_answers.py::test_a_login_page_or_redirect_at_open_says_log_in_without_retrying"),
    ("a 150 MB answer is read whole",
     "tests/unit/ibkr/test_client_answers.py::test_a_body_over_the_size_limit_fails_at_the_limit_without_retry"),
    ("dates outside the partitions raise OverflowError",
     "tests/e2e/test_dagster_cli.py::test_backfill_usage_errors_name_the_problem"),
)  # fmt: skip
"""(attack, test node id): a parametrised test is matched by its id prefix."""


def render(outcomes: dict[str, str]) -> str:
    """The table, with each attack's test outcome: ``held``, ``FAILED``, or ``not run``."""
    lines = [
        "# Red team: each attack, its test, held",
        "",
        "| attack | test | outcome |",
        "|---|---|---|",
    ]
    for attack, test in ATTACKS:
        lines.append(f"| {attack} | `{test}` | {outcomes.get(test, 'not run')} |")
    return "\n".join(lines) + "\n"
