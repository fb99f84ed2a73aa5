from graphbuild.cli.main import run

run()
