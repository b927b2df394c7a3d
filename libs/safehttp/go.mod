module github.com/agentidp/agentidp/libs/safehttp

go 1.26
