"""Runtime helpers every stage shares: multi-host setup (`distributed`), progress bars (`progress`),
argparse flags generated from pydantic configs (`cliargs`) and the configs' one pydantic base (`config`),
key/value tables (`console`), the float dtype table (`dtypes`), the layout of a training run directory
(`rundir`) and what a measurement ran on (`machine`). No stage logic lives here."""
