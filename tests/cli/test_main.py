"""The stbin command: help, errors as one line with exit code 2, and the demo job."""



def test_help_lists_commands(run_cli):
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("train", "summary", "export", "bench-inference", "estimators", "theory"):
        assert cmd in r.stdout


def test_no_command_prints_help_and_exits_2(run_cli):
    r = run_cli()
    assert r.returncode == 2 and "usage: stbin" in r.stdout


def test_every_listed_command_has_help(run_cli):
    from stbin.cli.main import COMMANDS

    for cmd in COMMANDS:
        r = run_cli(cmd, "--help")
        assert r.returncode == 0 and f"usage: stbin {cmd}" in r.stdout, cmd


def test_user_errors_are_one_line_with_exit_code_2(run_cli, assert_user_error):
    assert_user_error(run_cli("train", "--preset", "sbn_mnst"), "sbn_mnist")
