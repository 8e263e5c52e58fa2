"""Runtime helpers every stage shares: multi-host setup (`distributed`), progress bars (`progress`), argparse
flags generated from pydantic configs (`cliargs`) and the configs' one pydantic base (`config`). No stage
logic lives here."""
