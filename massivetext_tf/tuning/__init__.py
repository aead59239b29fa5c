"""massivetext_tf.tuning: keras-tuner search over the model zoo (docs/tuning.md).

- `space`: the search space (YAML `search_space:` / `--space` flags) -> keras-tuner hyperparameters
- `hypermodel.ZooHyperModel`: hyperparameters -> ExperimentConfig (token budgets) and models
- `search.search` / `search.ZooTuner`: random, Hyperband or Bayesian search whose trials run
  `massivetext_tf.training.trainer.Trainer`, TensorBoard HParams logs, trials.csv, best_config.yaml
- `compute_optimal`: Chinchilla-optimal N and D for a FLOP budget (Hoffmann et al. 2022)
"""
