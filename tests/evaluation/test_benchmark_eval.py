"""`massivetext benchmark-eval` (massivetext_tf/cli/benchmark_eval.py, wrapped by
tools/benchmark_eval.py) measures both paths on the same rows and reports a ratio of their
medians; bad flags exit 2."""


def test_scoring_vs_forward_reports_both_throughputs():
    from massivetext_tf.cli.benchmark_eval import main, scoring_vs_forward

    out = scoring_vs_forward(batch=2, length=16, hidden_dim=32, num_layers=1, rounds=2)
    assert out["scoring_tokens_per_s"] > 0 and out["train_forward_tokens_per_s"] > 0
    expected = out["train_forward_s_median"] / out["scoring_s_median"]  # medians rounded to 0.1 ms
    assert abs(out["ratio"] - expected) <= 0.05 * expected
    assert main(["--batch", "0"]) == 2
