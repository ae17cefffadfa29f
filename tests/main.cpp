// doctest's main, in its own translation unit (compiled without the precompiled header so that
// DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN takes effect).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
