#pragma once
/// \file
/// The library's version: the single place it is written. CMake reads these three lines back
/// (see the top-level CMakeLists.txt), so the package version always matches the headers.

#define CROWDLOSS_VERSION_MAJOR 0
#define CROWDLOSS_VERSION_MINOR 1
#define CROWDLOSS_VERSION_PATCH 0

#define CROWDLOSS_DETAIL_STR_(x) #x
#define CROWDLOSS_DETAIL_STR(x) CROWDLOSS_DETAIL_STR_(x)

/// The version as a string literal, e.g. "0.1.0".
#define CROWDLOSS_VERSION_STRING                                                                 \
  CROWDLOSS_DETAIL_STR(CROWDLOSS_VERSION_MAJOR)                                                  \
  "." CROWDLOSS_DETAIL_STR(CROWDLOSS_VERSION_MINOR) "." CROWDLOSS_DETAIL_STR(CROWDLOSS_VERSION_PATCH)

/// The version as one comparable integer: major·10000 + minor·100 + patch.
#define CROWDLOSS_VERSION                                                                        \
  (CROWDLOSS_VERSION_MAJOR * 10000 + CROWDLOSS_VERSION_MINOR * 100 + CROWDLOSS_VERSION_PATCH)
