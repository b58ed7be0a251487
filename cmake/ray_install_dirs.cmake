# ray_install_dirs.cmake - records, at install time, the directories that the
# install is about to create, so that `make uninstall` (ray_uninstall.cmake)
# removes exactly what the install put: its files (install_manifest.txt) and
# these directories, and nothing that was there before.
#
# Included from install(CODE) before any file is installed, where
# CMAKE_INSTALL_PREFIX is the prefix really used (`cmake --install --prefix`
# included) and $ENV{DESTDIR} is prepended as CMake's own rules do.
#
#   ray_record_install_dirs(<list file> <dir>...)
#
# <list file> gets a first line "DESTDIR=<the DESTDIR of this install>" (CMake's
# install_manifest.txt leaves DESTDIR out, so uninstall needs it from here),
# then each <dir> (relative to the prefix, or absolute) and every parent of it
# that does not exist yet, one path a line, DESTDIR included. The directories
# are merged with what an earlier install from this build directory recorded,
# so installing twice does not forget the directories the first install made.
function(ray_record_install_dirs list_file)
  set(_made "")
  if(EXISTS "${list_file}")
    file(STRINGS "${list_file}" _made)
    list(FILTER _made EXCLUDE REGEX "^DESTDIR=")
  endif()
  foreach(_dir IN LISTS ARGN)
    if(NOT IS_ABSOLUTE "${_dir}")
      set(_dir "${CMAKE_INSTALL_PREFIX}/${_dir}")
    endif()
    set(_dir "$ENV{DESTDIR}${_dir}")
    # Walk up to the first directory that exists; everything below it is new.
    while(NOT EXISTS "${_dir}" AND NOT IS_SYMLINK "${_dir}")
      list(APPEND _made "${_dir}")
      get_filename_component(_parent "${_dir}" DIRECTORY)
      if(_parent STREQUAL _dir OR _parent STREQUAL "")
        break()
      endif()
      set(_dir "${_parent}")
    endwhile()
  endforeach()
  list(REMOVE_DUPLICATES _made)
  set(_text "DESTDIR=$ENV{DESTDIR}\n")
  foreach(_d IN LISTS _made)
    string(APPEND _text "${_d}\n")
  endforeach()
  file(WRITE "${list_file}" "${_text}")
endfunction()
