# ray_pc.cmake - writes ray.pc at install time (included from install(CODE)).
#
# At install time CMAKE_INSTALL_PREFIX is the prefix actually used, including
# `cmake --install <dir> --prefix <p>`, so the .pc file names where the files
# really are. The caller sets RAY_PC_VERSION, RAY_PC_LIBDIR and
# RAY_PC_INCLUDEDIR (GNUInstallDirs values, relative or absolute).
function(ray_write_pc template output)
  set(RAY_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  foreach(_kind LIBDIR INCLUDEDIR)
    if(IS_ABSOLUTE "${RAY_PC_${_kind}}")
      set(RAY_PC_${_kind}_FULL "${RAY_PC_${_kind}}")
    else()
      set(RAY_PC_${_kind}_FULL "\${prefix}/${RAY_PC_${_kind}}")
    endif()
  endforeach()
  configure_file("${template}" "${output}" @ONLY)
endfunction()
