"""Runtime helpers every stage shares: multi-host setup (`distributed`), progress bars (`progress`),
argparse flags generated from pydantic configs (`cliargs`), key/value tables (`console`), the float dtype
table (`dtypes`) and the layout of a training run directory (`rundir`). No stage logic lives here."""
