from backprop_jax.cli import main

main()
