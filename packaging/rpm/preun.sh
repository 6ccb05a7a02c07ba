# shellcheck shell=sh
# %preun: what %systemd_preun does. On erase ($1 = 0), not on upgrade,
# disable and stop the service while its files are still there.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
  systemctl --no-reload disable --now mountwatchd.service >/dev/null 2>&1 || :
fi
