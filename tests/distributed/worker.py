"""One process of a multi-process test: join the run, then harvest or train (argv: JOB JSON).

JOB is harvest (JSON: HarvestConfig fields), train (JSON: {"sets": [...], "resume": bool, "stop": int|null})
or resume (JSON: {"run": RUN_DIR, "stop": int|null}). The distributed settings come from the environment the
test sets: SAELAB_TEST_COORDINATOR, SAELAB_TEST_PROCESSES, SAELAB_TEST_PROCESS_ID. Prints one RESULT line.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    from saelab.runtime.distributed import DistributedConfig, initialize

    n = int(os.environ["SAELAB_TEST_PROCESSES"])
    if n > 1:
        initialize(
            DistributedConfig(
                coordinator=os.environ["SAELAB_TEST_COORDINATOR"],
                num_processes=n,
                process_id=int(os.environ["SAELAB_TEST_PROCESS_ID"]),
            )
        )
    import jax

    job, spec = sys.argv[1], json.loads(sys.argv[2])
    if job == "harvest":
        from saelab.harvest import HarvestConfig, run

        run(HarvestConfig(**spec), progress=False)
        print(f"RESULT process={jax.process_index()} of={jax.process_count()} devices={jax.device_count()}")
        return
    from saelab import train

    if job == "train":
        r = train.run(train.load_config(None, spec["sets"]), stop_at_step=spec.get("stop"))
    else:
        r = train.run(train.load_run_config(spec["run"]), resume=True, stop_at_step=spec.get("stop"))
    print(
        f"RESULT process={jax.process_index()} of={jax.process_count()} devices={jax.device_count()} "
        f"start={r.start_step} steps={r.steps}",
        flush=True,
    )


if __name__ == "__main__":
    main()
