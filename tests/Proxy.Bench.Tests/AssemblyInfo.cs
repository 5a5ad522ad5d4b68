// The harness's process registry is global (KillAll kills every child): tests that start processes must not overlap.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
