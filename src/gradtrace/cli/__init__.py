"""The command-line interface: thin layers that parse, call one library function, and print."""
