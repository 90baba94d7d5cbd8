"""The AWBC sweep's private dataset copy is durable: files, folders and the rename fsynced."""

from pipelines.sweeps.awbc_sweep import copy_dataset


def test_copy_dataset_fsyncs_the_copy_and_the_folder_it_lands_in(tmp_path, monkeypatch, fsyncs):
    src = tmp_path / "src"
    (src / "meta").mkdir(parents=True)
    (src / "meta" / "info.json").write_text("{}")
    (src / "videos").mkdir()
    (src / "videos" / "a.mp4").write_bytes(b"video")
    synced = fsyncs
    dst = copy_dataset(src, tmp_path / "trial" / "dataset")
    assert (dst / "meta" / "info.json").read_text() == "{}"
    partial = str(tmp_path / "trial" / "dataset.partial")
    assert f"{partial}/meta/info.json" in synced and f"{partial}/meta" in synced
    assert synced[-1] == str(tmp_path / "trial")  # after the rename: the copy's name is durable
