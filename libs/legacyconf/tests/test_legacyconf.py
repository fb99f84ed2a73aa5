import legacyconf


def test_reads_the_job_table(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[job]\nqueue = "gpu"\nretries = 3\n')
    assert legacyconf.read(path)["job"] == {"queue": "gpu", "retries": 3}
    assert legacyconf.queue_of(path) == "gpu"


def test_default_queue(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("")
    assert legacyconf.queue_of(path) == "batch"
