from tidings.emulators.dev import main

main()
