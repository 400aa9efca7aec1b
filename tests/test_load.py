"""The CI variant of bench/load.py: 4 concurrent clients for 15 s, and each until it has 6 answers, against a
freshly started app.

The embedding cache is set to 8 MB (two embeddings) so that the four clients' images keep
evicting each other: every mask must still be the client's own, and the server's peak memory
under the load must stay within its peak for one request plus the cache bound and the headroom for
the concurrent requests. The amount of work is fixed, not the throughput: a slow or busy host takes
longer, and only a client that gets nothing for minutes (stuck) fails.
"""
import json
import sys

from conftest import ROOT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from bench import load  # noqa: E402

MIN_REQUESTS = 6  # per client: both prompts, three times each, on an image evicted in between


def test_concurrent_clients_each_get_their_own_masks(vit_t_checkpoint, tmp_path):
    result = load.run(vit_t_checkpoint, clients=4, duration=15, embedding_cache_mb=8, image_store_mb=64,
                      cache_dir=tmp_path / "cache", min_requests=MIN_REQUESTS)
    print(json.dumps(result, indent=1))
    assert result["errors"] == 0, result["error_samples"]
    assert result["mismatches"] == 0, result["mismatch_samples"]
    assert result["stuck_clients"] == 0
    assert result["requests_per_client"]["min"] >= MIN_REQUESTS  # every client was served, again and again
    assert result["image_checks"] >= 4  # each client's stored image fetched by its id at least once
    assert result["memory_within_bounds"] is True, result["server_memory_mb"]
    assert result["image_store_within_bounds"] is True
    assert result["passed"]
