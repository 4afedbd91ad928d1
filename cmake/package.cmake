# Installation layout and the Debian package (`cmake --build build --target package` makes
# seckill_<version>_amd64.deb in the build folder).
#
#   /usr/lib/seckill/seckilld           the daemon; /usr/bin/seckilld is a symlink to it, so that the default
#   /usr/lib/seckill/plugins/*.so       plugin_dir (<dir of seckilld>/plugins) is right without a config key
#   /usr/bin/seckill-sign, seckill-bench
#   /usr/share/seckill/policies/*.lua   policies.dir in the shipped config
#   /usr/share/seckill/console/*        admin.console_dir in the shipped config (Chart.js comes from libjs-chart.js)
#   /etc/seckill/seckill.conf           commented, a conffile
#   /lib/systemd/system/seckilld@.service
set(SK_LIBDIR lib/seckill)
install(TARGETS seckilld RUNTIME DESTINATION ${SK_LIBDIR})
install(TARGETS access logic admin LIBRARY DESTINATION ${SK_LIBDIR}/plugins)
install(TARGETS seckill-sign seckill-bench RUNTIME DESTINATION bin)
file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/pkg)
file(CREATE_LINK ../lib/seckill/seckilld ${CMAKE_BINARY_DIR}/pkg/seckilld SYMBOLIC)
install(FILES ${CMAKE_BINARY_DIR}/pkg/seckilld DESTINATION bin)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/policies/ DESTINATION share/seckill/policies FILES_MATCHING PATTERN "*.lua")
install(DIRECTORY ${CMAKE_SOURCE_DIR}/plugins/admin/console/ DESTINATION share/seckill/console)
install(FILES ${CMAKE_SOURCE_DIR}/packaging/seckill.conf DESTINATION /etc/seckill)
install(FILES ${CMAKE_SOURCE_DIR}/packaging/seckilld@.service DESTINATION /lib/systemd/system)
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION share/doc/seckill)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME seckill)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_CONTACT "SecKill maintainers <seckill@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "flash-sale daemon: access gateway, logic layer and admin with a web console")
set(CPACK_PACKAGE_DESCRIPTION "seckilld serves flash sales on libh2o with Redis and etcd: the access gateway, the\n\
logic layer that decides the winners, and the admin API with its operators' console. One\n\
systemd instance (seckilld@NAME) runs per config file /etc/seckill/NAME.conf.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE amd64)
# the shared libraries come from dpkg-shlibdeps; the console's chart library is a file, named here
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libjs-chart.js")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "redis-server, etcd-server")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${CMAKE_SOURCE_DIR}/packaging/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
include(CPack)
