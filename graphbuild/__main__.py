from graphbuild.cli import run

run()
