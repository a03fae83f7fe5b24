"""The example app's deploy, in Fabric 1 (fab-classic): builds a release directory and switches the
`current` symlink to it, printing each step.

The example deploys to this machine. zbot checks the app out in <work_dir>/adxstat/<environment>, and
the example's "server" lives next to zbot's work directory:
<work_dir>/../releases/adxstat/<environment>/{releases/<ref>, current}.
"""
import os
import shutil

from fabric.api import env, task

env.roledefs = {'production': ['localhost'], 'staging': ['localhost']}

HERE = os.path.dirname(os.path.abspath(__file__))


@task
def deploy(branch_name='main', noop='false'):
    role = env.roles[0] if env.roles else 'production'
    if noop == 'true':
        print("dry run: would deploy adxstat %s to %s; nothing changed" % (branch_name, role))
        return
    root = os.path.normpath(os.path.join(HERE, '..', '..', '..', 'releases', 'adxstat', role))
    release = os.path.join(root, 'releases', branch_name.replace('/', '-'))
    version = open(os.path.join(HERE, 'app', 'VERSION')).read().strip()
    print("deploying adxstat %s (version %s) to %s" % (branch_name, version, role))
    print("[1/3] building release %s" % release)
    if os.path.exists(release):
        shutil.rmtree(release)
    shutil.copytree(os.path.join(HERE, 'app'), release)
    print("[2/3] checking the release")
    if open(os.path.join(release, 'VERSION')).read().strip() != version:
        raise SystemExit("the release is incomplete")
    print("[3/3] switching current -> %s" % release)
    link = os.path.join(root, 'current')
    staged = link + '.new'
    if os.path.lexists(staged):
        os.remove(staged)
    os.symlink(release, staged)
    os.replace(staged, link)
    print("adxstat %s is live on %s" % (version, role))
