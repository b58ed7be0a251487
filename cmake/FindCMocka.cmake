# FindCMocka.cmake - locate cmocka for the rayc tests.
#
# Defines the imported target CMocka::cmocka and CMocka_FOUND.
# Tries pkg-config first (Debian's libcmocka-dev ships cmocka.pc), then a
# plain header/library search so a hand-built cmocka under a prefix in
# CMAKE_PREFIX_PATH works too.
include(FindPackageHandleStandardArgs)

if(NOT TARGET CMocka::cmocka)
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(PC_CMOCKA QUIET IMPORTED_TARGET cmocka)
  endif()

  if(PC_CMOCKA_FOUND)
    add_library(CMocka::cmocka INTERFACE IMPORTED)
    set_target_properties(CMocka::cmocka PROPERTIES INTERFACE_LINK_LIBRARIES PkgConfig::PC_CMOCKA)
    set(CMocka_VERSION "${PC_CMOCKA_VERSION}")
    set(CMocka_INCLUDE_DIR "${PC_CMOCKA_INCLUDEDIR}")
    set(CMocka_LIBRARY "PkgConfig::PC_CMOCKA")
  else()
    find_path(CMocka_INCLUDE_DIR NAMES cmocka.h)
    find_library(CMocka_LIBRARY NAMES cmocka)
    if(CMocka_INCLUDE_DIR AND CMocka_LIBRARY)
      add_library(CMocka::cmocka UNKNOWN IMPORTED)
      set_target_properties(CMocka::cmocka PROPERTIES
        IMPORTED_LOCATION "${CMocka_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${CMocka_INCLUDE_DIR}")
    endif()
  endif()
endif()

find_package_handle_standard_args(CMocka
  REQUIRED_VARS CMocka_LIBRARY
  VERSION_VAR CMocka_VERSION)
