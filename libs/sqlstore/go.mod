module github.com/agentidp/agentidp/libs/sqlstore

go 1.26
