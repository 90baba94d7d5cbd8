"""The `flywheel` dispatcher: usage, --version, unknown commands."""

from pipelines import cli


def test_version_names_the_installed_distribution(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("flywheel ") and out.split()[1][0].isdigit()


def test_usage_and_an_unknown_command(capsys):
    assert cli.main(["--help"]) == 0
    assert "train-policy" in capsys.readouterr().out
    assert cli.main([]) == 2
    capsys.readouterr()
    assert cli.main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err
