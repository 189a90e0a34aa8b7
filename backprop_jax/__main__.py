from backprop_jax.cli import main

if __name__ == "__main__":  # `python -m backprop_jax`; importing this module runs nothing
    main()
