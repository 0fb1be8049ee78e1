"""The plugin contract: what a task is (api/task.py), the requests it may make and the answers it gets
(api/requests.py), where its data comes from (api/data.py), and how its numbers' uncertainty is
computed (api/uncertainty.py). Everything a plugin imports lives here or in protocols/. Beside the
contract, for the runner: where plugins are found (api/plugins.py) and how named requests become the
engine's one list and its answers come back under the names (api/answers.py)."""
