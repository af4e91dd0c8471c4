from starter.dev.emulators.dev import main

main()
