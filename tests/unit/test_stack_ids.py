import base64

from ledgerstream.stack import new_cluster_id


def test_cluster_ids_are_16_bytes_and_never_look_like_an_option() -> None:
    # One id in 64 would start with "-" if drawn naively; 2,000 draws make that near certain.
    ids = [new_cluster_id() for _ in range(2000)]
    assert not any(i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
    for i in ids[:50]:
        assert len(base64.urlsafe_b64decode(i + "==")) == 16
