#pragma once
/// \file
/// The library's version: the single place it is written. CMake reads these three lines back
/// (see the top-level CMakeLists.txt), so the package version always matches the headers.

/// The major version number.
#define CROWDLOSS_VERSION_MAJOR 0
/// The minor version number. The CMake package is compatible within a minor version:
/// `find_package(crowdloss 0.1)` accepts any 0.1.x.
#define CROWDLOSS_VERSION_MINOR 1
/// The patch version number.
#define CROWDLOSS_VERSION_PATCH 0

#define CROWDLOSS_DETAIL_STR_(x) #x
#define CROWDLOSS_DETAIL_STR(x) CROWDLOSS_DETAIL_STR_(x)

/// The version as a string literal, e.g. "0.1.0".
#define CROWDLOSS_VERSION_STRING                \
  CROWDLOSS_DETAIL_STR(CROWDLOSS_VERSION_MAJOR) \
  "." CROWDLOSS_DETAIL_STR(CROWDLOSS_VERSION_MINOR) "." CROWDLOSS_DETAIL_STR(CROWDLOSS_VERSION_PATCH)

/// The version as one comparable integer: major·10000 + minor·100 + patch.
///
/// Example:
/// ```cpp
/// static_assert(CROWDLOSS_VERSION >= 100, "needs crowdloss 0.1.0 or newer");
/// ```
#define CROWDLOSS_VERSION (CROWDLOSS_VERSION_MAJOR * 10000 + CROWDLOSS_VERSION_MINOR * 100 + CROWDLOSS_VERSION_PATCH)
