# ray_uninstall.cmake - removes what `cmake --install` (make install) put.
#
#   cmake -DRAY_BUILD_DIR=<build dir> -P cmake/ray_uninstall.cmake
#
# Removes every file of <build dir>/install_manifest.txt (CMake's list of what
# the last install from that build directory wrote, without its DESTDIR),
# under the DESTDIR that install used, then the directories that install
# created, deepest first, each only if it is empty by then: a directory that
# existed before, or that holds anything else now, stays. The DESTDIR and the
# directories come from <build dir>/install_dirs.txt (ray_install_dirs.cmake).
# Then both lists are deleted, so a second uninstall says there is nothing to
# remove rather than pretending to.
if(NOT RAY_BUILD_DIR)
  message(FATAL_ERROR "ray_uninstall: usage: cmake -DRAY_BUILD_DIR=<build dir> -P ${CMAKE_CURRENT_LIST_FILE}")
endif()
set(_manifest "${RAY_BUILD_DIR}/install_manifest.txt")
set(_dirs_file "${RAY_BUILD_DIR}/install_dirs.txt")
if(NOT EXISTS "${_manifest}")
  message(FATAL_ERROR "ray_uninstall: ${_manifest} does not exist: nothing was installed from "
                      "this build directory (or it was uninstalled already)")
endif()

# The DESTDIR of the install, and the directories it made.
set(_destdir "")
set(_dirs "")
if(EXISTS "${_dirs_file}")
  file(STRINGS "${_dirs_file}" _dirs)
  foreach(_line IN LISTS _dirs)
    if(_line MATCHES "^DESTDIR=(.*)$")
      set(_destdir "${CMAKE_MATCH_1}")
    endif()
  endforeach()
  list(FILTER _dirs EXCLUDE REGEX "^DESTDIR=")
endif()

file(STRINGS "${_manifest}" _files)
set(_failed "")
foreach(_f IN LISTS _files)
  set(_f "${_destdir}${_f}")
  # IS_SYMLINK too: libray.so.0 dangles once libray.so.0.x.y is gone.
  if(IS_SYMLINK "${_f}" OR EXISTS "${_f}")
    message(STATUS "Removing ${_f}")
    file(REMOVE "${_f}")
    if(IS_SYMLINK "${_f}" OR EXISTS "${_f}")
      list(APPEND _failed "${_f}")
    endif()
  else()
    message(STATUS "Already gone: ${_f}")
  endif()
endforeach()
if(_failed)
  string(REPLACE ";" "\n  " _list "${_failed}")
  message(FATAL_ERROR "ray_uninstall: could not remove (permissions?):\n  ${_list}")
endif()

if(_dirs)
  # Deepest first: a longer path is never the parent of a shorter one.
  set(_keyed "")
  foreach(_d IN LISTS _dirs)
    string(LENGTH "${_d}" _n)
    math(EXPR _key "100000 + ${_n}") # fixed width, so the text sort is numeric
    list(APPEND _keyed "${_key}|${_d}")
  endforeach()
  list(SORT _keyed)
  list(REVERSE _keyed)
  foreach(_k IN LISTS _keyed)
    string(REGEX REPLACE "^[0-9]+\\|" "" _d "${_k}")
    if(IS_DIRECTORY "${_d}" AND NOT IS_SYMLINK "${_d}")
      file(GLOB _left LIST_DIRECTORIES true "${_d}/*" "${_d}/.*")
      if(_left)
        message(STATUS "Keeping ${_d} (not empty)")
      else()
        message(STATUS "Removing ${_d}/")
        file(REMOVE_RECURSE "${_d}")
      endif()
    endif()
  endforeach()
endif()
file(REMOVE "${_manifest}" "${_dirs_file}")
